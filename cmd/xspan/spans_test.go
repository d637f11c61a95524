package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sugarme/gotch"

	"xspan/checkpoint"
	"xspan/internal/torchrt"
	"xspan/spanview"
)

// xspan spans on a checkpoint writes the picture as a self-contained page (its data
// inline), a PNG and JSON whose tokens are the text; xspan export writes one
// safetensors file that reads back as the same model.
func TestCLISpansAndExport(t *testing.T) {
	runDir := tinyCharRun(t)
	dir := t.TempDir()
	text := string(testText()[:300])
	in := filepath.Join(dir, "text.txt")
	os.WriteFile(in, []byte(text), 0o644)
	html, pngf, js := filepath.Join(dir, "s.html"), filepath.Join(dir, "s.png"), filepath.Join(dir, "s.json")
	out, _ := mustRun(t, "spans", "--ckpt", runDir, "--device", "cpu", "--threads", "1", "--text", in, "--out", html, "--png", pngf, "--json", js)
	chars := len([]rune(text)) - 1 // the first is not predicted
	if !strings.Contains(out, fmt.Sprintf("bits per character over %d characters", chars)) || !strings.Contains(out, "layer 1: mean span") {
		t.Errorf("spans printed %q", out)
	}
	var s spanview.Score
	if err := json.Unmarshal(mustReadFile(t, js), &s); err != nil {
		t.Fatal(err)
	}
	var joined strings.Builder
	for _, tk := range s.Tokens {
		joined.WriteString(tk.Text)
	}
	if joined.String() != text || s.Layers != 1 || len(s.Live[0]) != len(s.Tokens) || s.AliveCount(0) == 0 {
		t.Errorf("json: %d tokens joining to %q, %d layers, %d alive", len(s.Tokens), joined.String()[:min(40, joined.Len())], s.Layers, s.AliveCount(0))
	}
	page := string(mustReadFile(t, html))
	if !strings.Contains(page, "function xspanView") || !strings.Contains(page, fmt.Sprintf(`"scored_chars":%d`, chars)) || strings.Contains(page, "<script src") {
		t.Errorf("the page is not self-contained with its data")
	}
	img, err := png.Decode(bytes.NewReader(mustReadFile(t, pngf)))
	if err != nil || img.Bounds().Dx() < 640 || img.Bounds().Dy() < 300 {
		t.Errorf("png: %v, %v", err, img)
	}
	code, _, stderr := run(t, "spans", "--ckpt", runDir, "--text", in)
	if code != 2 || !strings.Contains(stderr, "--out FILE.html") {
		t.Errorf("no output named: exit %d, %q", code, stderr)
	}

	model := filepath.Join(dir, "model.safetensors")
	out, _ = mustRun(t, "export", "--ckpt", runDir, "--format", "safetensors", "--out", model)
	if !strings.Contains(out, "wrote "+model) || !strings.Contains(out, "char vocabulary") {
		t.Errorf("export printed %q", out)
	}
	if code, _, stderr := run(t, "export", "--ckpt", runDir, "--format", "onnx", "--out", model); code != 2 || !strings.Contains(stderr, "safetensors") {
		t.Errorf("--format onnx: exit %d, %q", code, stderr)
	}
	defer torchrt.Lock()()
	m, ck, err := checkpoint.Load(runDir, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	m2, ex, err := checkpoint.ReadExport(model, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Step != ck.Step || ex.Config != ck.Config || ex.Vocab.Spec().Ref() != ck.Vocab.Spec().Ref() {
		t.Errorf("export: step %d, config equal %v", ex.Step, ex.Config == ck.Config)
	}
	a, b := m.NamedParameters(), m2.NamedParameters()
	for i := range a {
		_, _, da, _ := torchrt.Raw(a[i].Tensor)
		_, _, db, _ := torchrt.Raw(b[i].Tensor)
		if !bytes.Equal(da, db) {
			t.Errorf("%s differs after export and read", a[i].Name)
		}
	}

	// xspan import takes the file back: a run whose checkpoint has the same weights,
	// config and vocabulary, and evaluates to the same bits.
	back := filepath.Join(dir, "back")
	out, _ = mustRun(t, "import", "--from", model, "--out", back)
	if !strings.Contains(out, "xspan's safetensors export") {
		t.Errorf("import printed %q", out)
	}
	m3, ck3, err := checkpoint.Load(back, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	if ck3.Step != ck.Step || ck3.Config != ck.Config || ck3.Vocab.Spec().Ref() != ck.Vocab.Spec().Ref() {
		t.Errorf("imported: step %d, config equal %v", ck3.Step, ck3.Config == ck.Config)
	}
	if id3, ok3 := ck3.StartID(); !ok3 || ck.Header.StartID == nil || id3 != *ck.Header.StartID {
		t.Errorf("imported: start id %d (%v), the checkpoint's %v", id3, ok3, ck.Header.StartID)
	}
	c := m3.NamedParameters()
	for i := range a {
		_, _, da, _ := torchrt.Raw(a[i].Tensor)
		_, _, dc, _ := torchrt.Raw(c[i].Tensor)
		if !bytes.Equal(da, dc) {
			t.Errorf("%s differs after export and import", a[i].Name)
		}
	}
	data := ck.Header.Data.Dir
	e1, _ := mustRun(t, "eval", "--ckpt", runDir, "--data", data, "--split", "valid", "--max-blocks", "4", "--json", "--threads", "1")
	e2, _ := mustRun(t, "eval", "--ckpt", back, "--data", data, "--split", "valid", "--max-blocks", "4", "--json", "--threads", "1")
	bpc := func(js string) float64 {
		var r struct{ BPC float64 }
		json.Unmarshal([]byte(js), &r)
		return r.BPC
	}
	if bpc(e1) == 0 || bpc(e1) != bpc(e2) {
		t.Errorf("eval: %v before export, %v after import", bpc(e1), bpc(e2))
	}
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
