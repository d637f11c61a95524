package dataset

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// mustPrep runs Prep and returns the manifest and its log lines.
func mustPrep(t testing.TB, out string, inputs []string, opts ...Option) (*Manifest, string) {
	t.Helper()
	var log strings.Builder
	opts = append([]Option{WithLogf(func(f string, a ...any) {
		log.WriteString(strings.TrimSpace(fmt.Sprintf(f, a...)) + "\n")
	})}, opts...)
	m, err := Prep(context.Background(), out, inputs, opts...)
	if err != nil {
		t.Fatalf("prep: %v", err)
	}
	return m, log.String()
}

// decodeSplit returns a split's decoded text, shard by shard.
func decodeSplit(t testing.TB, r *Reader, split string) []byte {
	t.Helper()
	v, err := r.Vocab()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for ids, err := range r.All(split) {
		if err != nil {
			t.Fatal(err)
		}
		out.Write(v.Decode(ids))
	}
	return out.Bytes()
}

// leftovers lists entries of dir other than the given names (say, temporary folders).
func leftovers(t testing.TB, dir string, keep ...string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
outer:
	for _, e := range ents {
		for _, k := range keep {
			if e.Name() == k {
				continue outer
			}
		}
		out = append(out, e.Name())
	}
	return out
}
