package refckpt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// The values that the unpickler builds. Python's None is nil, bool is bool, int is int64,
// float is float64, str is string and bytes is []byte.
type (
	// Tuple is a Python tuple.
	Tuple []any
	// List is a Python list (a pointer: pickles may append to a list after referring to it).
	List struct{ Items []any }
	// Dict is a Python dict or collections.OrderedDict, its items in insertion order. A
	// later item with an equal key overrides an earlier one, as in Python; Get honours that.
	Dict struct {
		Ordered bool // built as collections.OrderedDict
		Items   []DictItem
	}
	// DictItem is one key and value of a Dict.
	DictItem struct{ Key, Value any }
	// Set is a Python set or frozenset.
	Set struct{ Items []any }
	// Global is a class or function that the pickle names (GLOBAL, STACK_GLOBAL). Nothing is
	// ever imported or called: calling one builds an Object.
	Global struct{ Module, Name string }
	// Object is the result of calling a Global (REDUCE, NEWOBJ) that the unpickler does not
	// build itself, with the state that BUILD gave it.
	Object struct {
		Class Global
		Args  []any
		State any
	}
	// PersID is a persistent id (BINPERSID) that the loader did not resolve.
	PersID struct{ ID any }
)

// Get returns the value of the last item whose key is the string key.
func (d *Dict) Get(key string) (any, bool) {
	for i := len(d.Items) - 1; i >= 0; i-- {
		if k, ok := d.Items[i].Key.(string); ok && k == key {
			return d.Items[i].Value, true
		}
	}
	return nil, false
}

// Limits that keep a damaged or hostile pickle from taking much memory or time: every
// allocation is bounded by the input's length or by these.
const (
	maxPickleStack = 1 << 20 // values on the stack and mark stack together
	maxPickleMemo  = 1 << 22 // memo entries
	maxLongBytes   = 8       // LONG1/LONG4 integers must fit in int64
)

// errPickle is wrapped by every unpickling error.
var errPickle = errors.New("pickle")

type unpickler struct {
	data   []byte
	pos    int
	stack  []any
	marks  []int
	memo   map[uint32]any
	persid func(pid any) (any, error)
	reduce func(fn Global, args Tuple) (any, bool, error)
}

func (u *unpickler) fail(op byte, format string, a ...any) error {
	return fmt.Errorf("%w: at byte %d (opcode %q): %s", errPickle, u.pos, op, fmt.Sprintf(format, a...))
}

func (u *unpickler) take(n int) ([]byte, bool) {
	if n < 0 || n > len(u.data)-u.pos {
		return nil, false
	}
	b := u.data[u.pos : u.pos+n]
	u.pos += n
	return b, true
}

func (u *unpickler) line() (string, bool) {
	for i := u.pos; i < len(u.data); i++ {
		if u.data[i] == '\n' {
			s := string(u.data[u.pos:i])
			u.pos = i + 1
			return s, true
		}
	}
	return "", false
}

func (u *unpickler) push(v any) error {
	if len(u.stack)+len(u.marks) >= maxPickleStack {
		return fmt.Errorf("more than %d values on the stack", maxPickleStack)
	}
	u.stack = append(u.stack, v)
	return nil
}

func (u *unpickler) pop() (any, bool) {
	base := 0
	if len(u.marks) > 0 {
		base = u.marks[len(u.marks)-1]
	}
	if len(u.stack) <= base {
		return nil, false
	}
	v := u.stack[len(u.stack)-1]
	u.stack = u.stack[:len(u.stack)-1]
	return v, true
}

func (u *unpickler) top() (any, bool) {
	base := 0
	if len(u.marks) > 0 {
		base = u.marks[len(u.marks)-1]
	}
	if len(u.stack) <= base {
		return nil, false
	}
	return u.stack[len(u.stack)-1], true
}

// popMark returns the values above the last mark and removes them and the mark.
func (u *unpickler) popMark() ([]any, bool) {
	if len(u.marks) == 0 {
		return nil, false
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := append([]any(nil), u.stack[m:]...)
	u.stack = u.stack[:m]
	return items, true
}

// hashable tells whether v may be a dict key or set item. Tuples are accepted without
// looking inside (looking would cost time in proportion to their depth at every use).
func hashable(v any) bool {
	switch v.(type) {
	case nil, bool, int64, float64, string, Global, Tuple:
		return true
	}
	return false
}

// unpickle decodes one pickle (protocols 0 to 5, the subset that torch.save and plain
// Python containers use). persid resolves persistent ids; reduce may build the result of
// calling a Global (ok false: the unpickler makes an Object). It never imports or runs
// anything, never panics on bad input, and allocates in proportion to the input.
func unpickle(data []byte, persid func(any) (any, error), reduce func(Global, Tuple) (any, bool, error)) (result any, err error) {
	u := &unpickler{data: data, memo: map[uint32]any{}, persid: persid, reduce: reduce}
	for {
		if u.pos >= len(u.data) {
			return nil, fmt.Errorf("%w: truncated: no STOP opcode in %d bytes", errPickle, len(u.data))
		}
		op := u.data[u.pos]
		u.pos++
		done, v, err := u.step(op)
		if err != nil {
			return nil, u.fail(op, "%v", err)
		}
		if done {
			return v, nil
		}
	}
}

func (u *unpickler) step(op byte) (done bool, result any, err error) {
	short := errors.New("truncated")
	underflow := errors.New("stack underflow")
	switch op {
	case 0x80: // PROTO
		b, ok := u.take(1)
		if !ok {
			return false, nil, short
		}
		if b[0] > 5 {
			return false, nil, fmt.Errorf("unsupported pickle protocol %d", b[0])
		}
	case 0x95: // FRAME: frames only group opcodes
		if _, ok := u.take(8); !ok {
			return false, nil, short
		}
	case '.': // STOP
		v, ok := u.pop()
		if !ok {
			return false, nil, underflow
		}
		return true, v, nil
	case '(': // MARK
		if len(u.stack)+len(u.marks) >= maxPickleStack {
			return false, nil, fmt.Errorf("more than %d marks", maxPickleStack)
		}
		u.marks = append(u.marks, len(u.stack))
	case '0': // POP
		if _, ok := u.pop(); !ok {
			if _, ok := u.popMark(); !ok {
				return false, nil, underflow
			}
		}
	case '1': // POP_MARK
		if _, ok := u.popMark(); !ok {
			return false, nil, errors.New("no mark")
		}
	case '2': // DUP
		v, ok := u.top()
		if !ok {
			return false, nil, underflow
		}
		return false, nil, u.push(v)
	case 'N':
		return false, nil, u.push(nil)
	case 0x88:
		return false, nil, u.push(true)
	case 0x89:
		return false, nil, u.push(false)
	case 'J', 'K', 'M': // BININT, BININT1, BININT2
		n := map[byte]int{'J': 4, 'K': 1, 'M': 2}[op]
		b, ok := u.take(n)
		if !ok {
			return false, nil, short
		}
		var v int64
		switch op {
		case 'J':
			v = int64(int32(binary.LittleEndian.Uint32(b)))
		case 'K':
			v = int64(b[0])
		default:
			v = int64(binary.LittleEndian.Uint16(b))
		}
		return false, nil, u.push(v)
	case 'I', 'L': // INT, LONG (text)
		s, ok := u.line()
		if !ok {
			return false, nil, short
		}
		if op == 'L' && len(s) > 0 && s[len(s)-1] == 'L' {
			s = s[:len(s)-1]
		}
		switch s {
		case "00":
			return false, nil, u.push(false)
		case "01":
			return false, nil, u.push(true)
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return false, nil, fmt.Errorf("bad integer %q", s)
		}
		return false, nil, u.push(v)
	case 0x8a, 0x8b: // LONG1, LONG4
		var n int
		if op == 0x8a {
			b, ok := u.take(1)
			if !ok {
				return false, nil, short
			}
			n = int(b[0])
		} else {
			b, ok := u.take(4)
			if !ok {
				return false, nil, short
			}
			n = int(int32(binary.LittleEndian.Uint32(b)))
		}
		if n < 0 || n > maxLongBytes {
			return false, nil, fmt.Errorf("integer of %d bytes does not fit in 64 bits", n)
		}
		b, ok := u.take(n)
		if !ok {
			return false, nil, short
		}
		var v uint64
		for i := n - 1; i >= 0; i-- {
			v = v<<8 | uint64(b[i])
		}
		if n > 0 && n < 8 && b[n-1]&0x80 != 0 { // sign-extend
			v |= ^uint64(0) << (8 * n)
		}
		return false, nil, u.push(int64(v))
	case 'G': // BINFLOAT (big-endian)
		b, ok := u.take(8)
		if !ok {
			return false, nil, short
		}
		return false, nil, u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
	case 'F': // FLOAT (text)
		s, ok := u.line()
		if !ok {
			return false, nil, short
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return false, nil, fmt.Errorf("bad float %q", s)
		}
		return false, nil, u.push(v)
	case 'X', 0x8c, 0x8d, 'T', 'U', 'B', 'C', 0x8e, 0x96: // strings and bytes with a length
		var n uint64
		switch op {
		case 0x8c, 'U', 'C': // SHORT_BINUNICODE, SHORT_BINSTRING, SHORT_BINBYTES
			b, ok := u.take(1)
			if !ok {
				return false, nil, short
			}
			n = uint64(b[0])
		case 'X', 'T', 'B': // BINUNICODE, BINSTRING, BINBYTES
			b, ok := u.take(4)
			if !ok {
				return false, nil, short
			}
			n = uint64(binary.LittleEndian.Uint32(b))
		default: // BINUNICODE8, BINBYTES8, BYTEARRAY8
			b, ok := u.take(8)
			if !ok {
				return false, nil, short
			}
			n = binary.LittleEndian.Uint64(b)
		}
		if n > uint64(len(u.data)-u.pos) {
			return false, nil, fmt.Errorf("a string of %d bytes where %d remain", n, len(u.data)-u.pos)
		}
		b, _ := u.take(int(n))
		switch op {
		case 'X', 0x8c, 0x8d, 'T', 'U':
			return false, nil, u.push(string(b))
		}
		return false, nil, u.push(append([]byte(nil), b...))
	case ')':
		return false, nil, u.push(Tuple{})
	case 't':
		items, ok := u.popMark()
		if !ok {
			return false, nil, errors.New("no mark")
		}
		return false, nil, u.push(Tuple(items))
	case 0x85, 0x86, 0x87: // TUPLE1..3
		n := int(op - 0x84)
		items := make(Tuple, n)
		for i := n - 1; i >= 0; i-- {
			v, ok := u.pop()
			if !ok {
				return false, nil, underflow
			}
			items[i] = v
		}
		return false, nil, u.push(items)
	case ']':
		return false, nil, u.push(&List{})
	case 'l': // LIST
		items, ok := u.popMark()
		if !ok {
			return false, nil, errors.New("no mark")
		}
		return false, nil, u.push(&List{Items: items})
	case 'a', 'e': // APPEND, APPENDS
		var items []any
		if op == 'a' {
			v, ok := u.pop()
			if !ok {
				return false, nil, underflow
			}
			items = []any{v}
		} else {
			var ok bool
			if items, ok = u.popMark(); !ok {
				return false, nil, errors.New("no mark")
			}
		}
		t, ok := u.top()
		if !ok {
			return false, nil, underflow
		}
		l, ok := t.(*List)
		if !ok {
			return false, nil, fmt.Errorf("APPEND to a %s, not a list", kind(t))
		}
		l.Items = append(l.Items, items...)
	case '}':
		return false, nil, u.push(&Dict{})
	case 'd', 's', 'u': // DICT, SETITEM, SETITEMS
		var items []any
		if op == 's' {
			v, ok1 := u.pop()
			k, ok2 := u.pop()
			if !ok1 || !ok2 {
				return false, nil, underflow
			}
			items = []any{k, v}
		} else {
			var ok bool
			if items, ok = u.popMark(); !ok {
				return false, nil, errors.New("no mark")
			}
		}
		if len(items)%2 != 0 {
			return false, nil, fmt.Errorf("odd number (%d) of keys and values", len(items))
		}
		var d *Dict
		if op == 'd' {
			d = &Dict{}
		} else {
			t, ok := u.top()
			if !ok {
				return false, nil, underflow
			}
			if d, ok = t.(*Dict); !ok {
				return false, nil, fmt.Errorf("SETITEM on a %s, not a dict", kind(t))
			}
		}
		for i := 0; i < len(items); i += 2 {
			if !hashable(items[i]) {
				return false, nil, fmt.Errorf("unhashable dict key of type %s", kind(items[i]))
			}
			d.Items = append(d.Items, DictItem{items[i], items[i+1]})
		}
		if op == 'd' {
			return false, nil, u.push(d)
		}
	case 0x8f: // EMPTY_SET
		return false, nil, u.push(&Set{})
	case 0x90, 0x91: // ADDITEMS, FROZENSET
		items, ok := u.popMark()
		if !ok {
			return false, nil, errors.New("no mark")
		}
		for _, it := range items {
			if !hashable(it) {
				return false, nil, fmt.Errorf("unhashable set item of type %s", kind(it))
			}
		}
		if op == 0x91 {
			return false, nil, u.push(&Set{Items: items})
		}
		t, ok := u.top()
		if !ok {
			return false, nil, underflow
		}
		s, ok := t.(*Set)
		if !ok {
			return false, nil, fmt.Errorf("ADDITEMS to a %s, not a set", kind(t))
		}
		s.Items = append(s.Items, items...)
	case 'c': // GLOBAL
		mod, ok1 := u.line()
		name, ok2 := u.line()
		if !ok1 || !ok2 {
			return false, nil, short
		}
		return false, nil, u.push(Global{mod, name})
	case 0x93: // STACK_GLOBAL
		name, ok1 := u.pop()
		mod, ok2 := u.pop()
		if !ok1 || !ok2 {
			return false, nil, underflow
		}
		ms, ok1 := mod.(string)
		ns, ok2 := name.(string)
		if !ok1 || !ok2 {
			return false, nil, errors.New("STACK_GLOBAL needs two strings")
		}
		return false, nil, u.push(Global{ms, ns})
	case 'R', 0x81: // REDUCE, NEWOBJ
		a, ok1 := u.pop()
		f, ok2 := u.pop()
		if !ok1 || !ok2 {
			return false, nil, underflow
		}
		args, ok := a.(Tuple)
		if !ok {
			return false, nil, fmt.Errorf("call arguments are a %s, not a tuple", kind(a))
		}
		g, ok := f.(Global)
		if !ok {
			return false, nil, fmt.Errorf("call of a %s, not a class or function", kind(f))
		}
		v, err := u.call(g, args)
		if err != nil {
			return false, nil, err
		}
		return false, nil, u.push(v)
	case 0x92: // NEWOBJ_EX
		kw, ok1 := u.pop()
		a, ok2 := u.pop()
		f, ok3 := u.pop()
		if !ok1 || !ok2 || !ok3 {
			return false, nil, underflow
		}
		args, ok := a.(Tuple)
		g, ok2 := f.(Global)
		if !ok || !ok2 {
			return false, nil, errors.New("NEWOBJ_EX needs a class and a tuple")
		}
		return false, nil, u.push(&Object{Class: g, Args: args, State: kw})
	case 'b': // BUILD
		state, ok1 := u.pop()
		t, ok2 := u.top()
		if !ok1 || !ok2 {
			return false, nil, underflow
		}
		switch o := t.(type) {
		case *Object:
			o.State = state
		case *Dict: // OrderedDict.__setstate__-style builds carry nothing we need
		case *Tensor: // _rebuild_tensor_v2 results never get BUILD; tolerate a no-op
		default:
			return false, nil, fmt.Errorf("BUILD on a %s", kind(t))
		}
	case 'Q': // BINPERSID
		pid, ok := u.pop()
		if !ok {
			return false, nil, underflow
		}
		var v any = PersID{pid}
		if u.persid != nil {
			var err error
			if v, err = u.persid(pid); err != nil {
				return false, nil, err
			}
		}
		return false, nil, u.push(v)
	case 'P': // PERSID (text)
		s, ok := u.line()
		if !ok {
			return false, nil, short
		}
		return false, nil, u.push(PersID{s})
	case 'q', 'r', 'p', 0x94: // BINPUT, LONG_BINPUT, PUT, MEMOIZE
		idx := uint32(len(u.memo)) // MEMOIZE: the next index
		if op != 0x94 {
			var err error
			if idx, err = u.memoIndex(op == 'q', op == 'r', short); err != nil {
				return false, nil, err
			}
		}
		v, ok := u.top()
		if !ok {
			return false, nil, underflow
		}
		if _, exists := u.memo[idx]; !exists && len(u.memo) >= maxPickleMemo {
			return false, nil, fmt.Errorf("more than %d memo entries", maxPickleMemo)
		}
		u.memo[idx] = v
	case 'h', 'j', 'g': // BINGET, LONG_BINGET, GET
		idx, err := u.memoIndex(op == 'h', op == 'j', short)
		if err != nil {
			return false, nil, err
		}
		v, ok := u.memo[idx]
		if !ok {
			return false, nil, fmt.Errorf("memo index %d was never stored", idx)
		}
		return false, nil, u.push(v)
	default:
		return false, nil, fmt.Errorf("unsupported opcode 0x%02x", op)
	}
	return false, nil, nil
}

// memoIndex reads the memo index of a PUT or GET opcode: one byte (BINPUT, BINGET), four
// little-endian bytes (LONG_BINPUT, LONG_BINGET) or a decimal line (PUT, GET).
func (u *unpickler) memoIndex(oneByte, fourBytes bool, short error) (uint32, error) {
	switch {
	case oneByte:
		b, ok := u.take(1)
		if !ok {
			return 0, short
		}
		return uint32(b[0]), nil
	case fourBytes:
		b, ok := u.take(4)
		if !ok {
			return 0, short
		}
		return binary.LittleEndian.Uint32(b), nil
	}
	s, ok := u.line()
	if !ok {
		return 0, short
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("bad memo index %q", s)
	}
	return uint32(n), nil
}

// call builds the result of calling g with args: an OrderedDict, what reduce builds, or an
// Object that records the call.
func (u *unpickler) call(g Global, args Tuple) (any, error) {
	if g == (Global{"collections", "OrderedDict"}) {
		if len(args) != 0 {
			return nil, fmt.Errorf("OrderedDict with %d arguments", len(args))
		}
		return &Dict{Ordered: true}, nil
	}
	if u.reduce != nil {
		v, ok, err := u.reduce(g, args)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %v", g.Module, g.Name, err)
		}
		if ok {
			return v, nil
		}
	}
	return &Object{Class: g, Args: args}, nil
}

// kind names a value's Python type for error messages.
func kind(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int64:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []byte:
		return "bytes"
	case Tuple:
		return "tuple"
	case *List:
		return "list"
	case *Dict:
		return "dict"
	case *Set:
		return "set"
	case Global:
		return "global " + x.Module + "." + x.Name
	case *Object:
		return x.Class.Module + "." + x.Class.Name + " object"
	case *Tensor:
		return "tensor"
	case PersID:
		return "persistent id"
	}
	return fmt.Sprintf("%T", v)
}
