package eval_test

import (
	"os"
	"testing"

	"xspan/internal/testcorpus"
	"xspan/lm"
)

// testText, testData and tinyConfig are the shared test corpus, its dataset and a tiny
// model config (internal/testcorpus).
func testText(n int) string          { return testcorpus.Text(n) }
func testData(t *testing.T) string   { return testcorpus.Dataset(t) }
func tinyConfig(steps int) lm.Config { return testcorpus.TinyConfig(steps) }

func TestMain(m *testing.M) {
	code := m.Run()
	testcorpus.Cleanup()
	os.Exit(code)
}
