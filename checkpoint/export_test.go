package checkpoint

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sugarme/gotch"

	"xspan/internal/torchrt"
	"xspan/lm"
)

// An export read back gives the same model: every weight bit for bit, the config, the
// vocabulary, the step and tokens, and the same log-probabilities on a text.
func TestExportRoundTrip(t *testing.T) {
	defer torchrt.Lock()()
	run := t.TempDir()
	dir := writeTest(t, run, 7, 5)
	m, ck, err := Load(dir, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "model.safetensors")
	if err := WriteExport(path, m, ck); err != nil {
		t.Fatal(err)
	}
	// The export gets the mode of any new file here (0666 less the umask), as the
	// checkpoint's files do, not 0600.
	plain := filepath.Join(filepath.Dir(path), "plain")
	if f, err := os.Create(plain); err == nil {
		f.Close()
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode() != statMode(t, plain) {
		t.Errorf("export mode %v (%v), want %v as a new file has", fi.Mode(), err, statMode(t, plain))
	}
	if !IsExport(path) || IsExport(filepath.Join(dir, WeightsName)) {
		t.Fatalf("IsExport: the export %v, a checkpoint's weights %v", IsExport(path), IsExport(filepath.Join(dir, WeightsName)))
	}
	m2, ex, err := ReadExport(path, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Step != 7 || ex.Tokens != ck.Tokens || ex.Config != ck.Config || ex.Vocab.Spec().Ref() != ck.Vocab.Spec().Ref() {
		t.Fatalf("read back step %d tokens %d, config equal %v, vocab %s; want 7, %d, true, %s",
			ex.Step, ex.Tokens, ex.Config == ck.Config, ex.Vocab.Spec().Ref(), ck.Tokens, ck.Vocab.Spec().Ref())
	}
	a, b := m.NamedParameters(), m2.NamedParameters()
	if len(a) != len(b) {
		t.Fatalf("%d parameters, read back %d", len(a), len(b))
	}
	for i := range a {
		_, _, da, _ := torchrt.Raw(a[i].Tensor)
		_, _, db, _ := torchrt.Raw(b[i].Tensor)
		if a[i].Name != b[i].Name || !bytes.Equal(da, db) {
			t.Fatalf("parameter %s differs after the round trip", a[i].Name)
		}
	}
	logp := func(m *lm.Model) []float64 {
		d := m.NewDecoder()
		defer d.Close()
		out, err := d.Feed([]int64{1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2})
		if err != nil {
			t.Fatal(err)
		}
		r := make([]float64, len(out))
		for i, x := range out {
			r[i] = float64(x)
		}
		return r
	}
	la, lb := logp(m), logp(m2)
	for i := range la {
		if la[i] != lb[i] {
			t.Fatalf("log-probability %d: %v, read back %v", i, la[i], lb[i])
		}
	}

	// Damage is refused with a line naming the file.
	data, _ := os.ReadFile(path)
	bad := filepath.Join(t.TempDir(), "bad.safetensors")
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"a flipped data byte", flip(data, len(data)-3), "checksum"},
		{"truncated", data[:len(data)-10], bad},
		{"a checkpoint's weights", mustRead(t, filepath.Join(dir, WeightsName)), "not an xspan model export"},
	} {
		os.WriteFile(bad, c.data, 0o644)
		_, _, err := ReadExport(bad, gotch.CPU)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), bad) {
			t.Errorf("%s: %v; want an error naming the file with %q", c.name, err, c.want)
		}
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x40
	return c
}

func mustRead(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkSpec parses a safetensors file from the format's specification alone, with
// python3 and numpy: an 8-byte little-endian header length, a JSON header of
// {name: {dtype, shape, data_offsets}} and string-to-string __metadata__, offsets that
// tile the data section exactly in order, each of its dtype's size times its shape's
// product. It prints, per tensor, its dtype, shape, the sha256 of its bytes and the sum
// of its values as numpy reads them.
const checkSpec = `
import json, struct, sys, hashlib
import numpy as np
raw = open(sys.argv[1], "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
header = json.loads(raw[8:8 + n].decode("utf-8"))
data = raw[8 + n:]
meta = header.pop("__metadata__")
assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()), "metadata must map strings to strings"
sizes = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
kinds = {"F64": "<f8", "F32": "<f4", "I64": "<i8", "I32": "<i4", "U8": "u1"}
out, end = {}, 0
for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    b, e = t["data_offsets"]
    assert b == end, f"{name}: begins at {b}, the previous tensor ended at {end}"
    assert e - b == sizes[t["dtype"]] * int(np.prod(t["shape"], dtype=np.int64)), f"{name}: {e - b} bytes for {t['dtype']} {t['shape']}"
    a = np.frombuffer(data[b:e], dtype=kinds[t["dtype"]]).reshape(t["shape"])
    out[name] = {"dtype": t["dtype"], "shape": list(a.shape), "sha256": hashlib.sha256(data[b:e]).hexdigest(), "sum": float(a.astype(np.float64).sum())}
    end = e
assert end == len(data), f"the tensors cover {end} of {len(data)} data bytes"
print(json.dumps({"metadata": meta, "tensors": out}))
`

// The export is a safetensors file by the format's specification: python3 with numpy
// parses it without xspan's code (Python's safetensors package cannot be installed
// here) and reads every tensor with the bytes, shape and values xspan wrote, and the
// config and vocabulary from the metadata.
func TestExportReadByNumpy(t *testing.T) {
	py := ""
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import numpy").Run() == nil {
			py = p
			break
		}
	}
	if py == "" {
		t.Skip("no python3 with numpy: apt-get install python3-numpy")
	}
	defer torchrt.Lock()()
	dir := writeTest(t, t.TempDir(), 3, 2)
	m, ck, err := Load(dir, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "model.safetensors")
	if err := WriteExport(path, m, ck); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "check.py")
	os.WriteFile(script, []byte(checkSpec), 0o644)
	outb, err := exec.Command(py, script, path).CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, outb)
	}
	var got struct {
		Metadata map[string]string
		Tensors  map[string]struct {
			DType  string
			Shape  []int64
			SHA256 string
			Sum    float64
		}
	}
	if err := json.Unmarshal(outb, &got); err != nil {
		t.Fatalf("%v: %s", err, outb)
	}
	params := m.NamedParameters()
	if len(got.Tensors) != len(params) {
		t.Fatalf("numpy read %d tensors, the model has %d", len(got.Tensors), len(params))
	}
	for _, p := range params {
		g, ok := got.Tensors[p.Name]
		dtype, shape, data, _ := torchrt.Raw(p.Tensor)
		sum := sha256.Sum256(data)
		var total float64
		for _, x := range torchrt.Float64s(p.Tensor) {
			total += x
		}
		if !ok || g.DType != dtype || g.DType != "F32" || !equalShape(g.Shape, shape) || g.SHA256 != hex.EncodeToString(sum[:]) ||
			math.Abs(g.Sum-total) > 1e-9*max(1, math.Abs(total)) {
			t.Errorf("%s: numpy read %+v; xspan has %s %v sum %v", p.Name, g, dtype, shape, total)
		}
	}
	var cfg lm.Config
	if err := json.Unmarshal([]byte(got.Metadata["config"]), &cfg); err != nil || cfg != ck.Config {
		t.Errorf("config in the metadata: %v, equal %v", err, cfg == ck.Config)
	}
	if got.Metadata["format"] != ExportFormat || got.Metadata["step"] != "3" || !strings.Contains(got.Metadata["vocab"], `"kind":"char"`) {
		t.Errorf("metadata %v", got.Metadata)
	}
}

func equalShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func statMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}
