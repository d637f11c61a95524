package refckpt

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Param is one entry of the reference's model state dict.
type Param struct {
	Name  string  // as the reference names it, without DistributedDataParallel's "module."
	Shape []int64 // as saved
	DType string  // the storage's element type (float32 for the reference)
	Data  []float32
}

// Numel is the number of elements.
func (p Param) Numel() int64 {
	n := int64(1)
	for _, s := range p.Shape {
		n *= s
	}
	return n
}

// Checkpoint is what the reference's utils/checkpoint.save writes: torch.save of
// {"epoch", "model", "logger", "optimizer", "scheduler_epoch"}.
type Checkpoint struct {
	Path           string
	Keys           []string // the top-level keys, in file order
	Epoch          int64    // the "epoch" entry: epochs trained (the next epoch to run)
	SchedulerEpoch int64    // the "scheduler_epoch" entry (optimizer steps taken), -1 if absent
	Params         []Param  // the "model" entry, in file order
	// Root is the whole decoded object tree (optimizer state, logger): dicts, lists,
	// tuples, scalars and *Tensor, whose values are read on demand while the file is open
	// (Read reads all of "model" and closes it).
	Root *Dict
}

// Param returns the parameter called name, or false.
func (c *Checkpoint) Param(name string) (Param, bool) {
	for _, p := range c.Params {
		if p.Name == name {
			return p, true
		}
	}
	return Param{}, false
}

// maxCheckpointBytes bounds the file size Read accepts (the tensors it reads are bounded
// by the file's size).
const maxCheckpointBytes = 64 << 30

// Read reads a checkpoint written by the reference implementation. Errors name the file
// and what is wrong with it.
func Read(path string) (*Checkpoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("refckpt: %v", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("refckpt: %v", err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("refckpt: %s is a folder, not a checkpoint file", path)
	}
	if st.Size() > maxCheckpointBytes {
		return nil, fmt.Errorf("refckpt: %s: %d bytes, more than the %d accepted", path, st.Size(), int64(maxCheckpointBytes))
	}
	return Parse(f, st.Size(), path)
}

// Parse reads a checkpoint of size bytes from r; name is used in errors.
func Parse(r io.ReaderAt, size int64, name string) (*Checkpoint, error) {
	a, root, err := load(r, size, name)
	if err != nil {
		return nil, err
	}
	d, ok := root.(*Dict)
	if !ok {
		return nil, a.errorf("the saved object is a %s, not a dict with a \"model\" entry", kind(root))
	}
	c := &Checkpoint{Path: name, Root: d, SchedulerEpoch: -1}
	seen := map[string]bool{}
	for _, it := range d.Items {
		k, ok := it.Key.(string)
		if !ok {
			return nil, a.errorf("top-level key of type %s", kind(it.Key))
		}
		if !seen[k] {
			c.Keys = append(c.Keys, k)
			seen[k] = true
		}
	}
	if v, ok := d.Get("epoch"); ok {
		if c.Epoch, ok = v.(int64); !ok {
			return nil, a.errorf("\"epoch\" is a %s, not an int", kind(v))
		}
	}
	if v, ok := d.Get("scheduler_epoch"); ok && v != nil {
		if c.SchedulerEpoch, ok = v.(int64); !ok {
			return nil, a.errorf("\"scheduler_epoch\" is a %s, not an int", kind(v))
		}
	}
	mv, ok := d.Get("model")
	if !ok {
		return nil, a.errorf("no \"model\" entry (top-level keys: %s): not a checkpoint of the reference's trainer", strings.Join(c.Keys, ", "))
	}
	md, ok := mv.(*Dict)
	if !ok {
		return nil, a.errorf("\"model\" is a %s, not a state dict", kind(mv))
	}
	index := map[string]int{}
	for _, it := range md.Items {
		k, ok := it.Key.(string)
		if !ok {
			return nil, a.errorf("model state dict key of type %s", kind(it.Key))
		}
		name := strings.TrimPrefix(k, "module.")
		t, ok := it.Value.(*Tensor)
		if !ok {
			return nil, a.errorf("model entry %s is a %s, not a tensor", k, kind(it.Value))
		}
		data, err := t.Float32s()
		if err != nil {
			return nil, a.errorf("model entry %s: %v", k, err)
		}
		p := Param{Name: name, Shape: append([]int64(nil), t.Shape...), DType: t.Storage.DType.Name, Data: data}
		if i, dup := index[name]; dup {
			c.Params[i] = p // a later item overrides, as in Python
			continue
		}
		index[name] = len(c.Params)
		c.Params = append(c.Params, p)
	}
	if len(c.Params) == 0 {
		return nil, a.errorf("the model state dict is empty")
	}
	return c, nil
}

// Names returns the parameter names, sorted.
func (c *Checkpoint) Names() []string {
	out := make([]string, len(c.Params))
	for i, p := range c.Params {
		out[i] = p.Name
	}
	sort.Strings(out)
	return out
}
