package generate_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"xspan/eval"
	"xspan/generate"
	"xspan/internal/browser"
	"xspan/internal/torchrt"
	"xspan/serve"
	"xspan/spanview"
	"xspan/tokenize"
)

// scoringLM serves a real model that also scores texts (POST /v1/score).
type scoringLM struct{ lmModel }

func (l scoringLM) Score(ctx context.Context, ids []int64) (*spanview.Score, error) {
	return eval.ScoreText(ctx, l.m, tokenize.Byte{}, ids)
}

// The page at / in a real browser (Debian's chromium, headless): it shows a model card,
// generates, then draws what the model remembers of the text: every character of the
// prompt and the new text in the spans view, coloured (many distinct colours: random
// spans differ), some marked as still in memory, a live-memory line per layer with a
// point per token; another layer recolours it; hovering shows span and age; a pasted text
// is shown as it is; a bad value gets a message for the person at the page.
func TestPageInBrowser(t *testing.T) {
	exe := browser.Find()
	if exe == "" {
		t.Skip("no chromium installed: apt-get install chromium (make test installs it when run as root)")
	}
	defer torchrt.Lock()()
	m := tinyLM(t)
	// A random model's span predictor starts at zero (every span 0.1·L): spread it, so
	// that spans, and colours, differ from token to token.
	var ws []ts.NamedTensor
	for _, p := range m.NamedParameters() {
		if strings.HasSuffix(p.Name, "span_w") {
			p.Tensor = ts.MustRandn(p.Tensor.MustSize(), gotch.Float, gotch.CPU).MustMulScalar(ts.FloatScalar(0.4), true)
			defer p.Tensor.MustDrop()
		}
		ws = append(ws, p)
	}
	if err := m.SetWeights(ws); err != nil {
		t.Fatal(err)
	}
	url, _ := startLMServer(t, scoringLM{lmModel{m, true}})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tab, closeBrowser := browser.Start(ctx, exe, t.TempDir(), 1100, 1300)
	defer closeBrowser()
	if err := browser.Open(tab, url+"/"); err != nil {
		t.Fatalf("loading the page in %s: %v", exe, err)
	}
	prompt := "Expire-Span keeps what it needs. "
	v, err := browser.Generate(tab, prompt, 60, 7, time.Minute)
	if err != nil {
		t.Fatalf("generating: %v (page: %+v)", err, v)
	}
	if v.Error != "" {
		t.Fatalf("the page shows an error: %s", v.Error)
	}
	t.Logf("card: %s", v.Card)
	t.Logf("summary: %s", v.Summary)
	if !strings.Contains(v.Card, "2 layers × d 32") || !strings.Contains(v.Card, "Expire-Span, up to 64 tokens") || strings.Contains(v.Card, "{") {
		t.Errorf("model card %q: want a short card, not JSON", v.Card)
	}
	if !strings.HasPrefix(v.Out, prompt) || len(v.Out) <= len(prompt) {
		t.Fatalf("generated box %q", v.Out)
	}
	if v.Text != v.Out {
		t.Errorf("the spans view shows %q, the text is %q", v.Text, v.Out)
	}
	n := len(v.Out) // bytes: one token each
	if v.Cells != n || v.Coloured != n || v.Colours < 10 {
		t.Errorf("%d tokens shown, %d coloured with %d distinct colours; want %d, all, at least 10", v.Cells, v.Coloured, v.Colours, n)
	}
	if v.Alive == 0 || v.Alive >= n {
		t.Errorf("%d of %d tokens marked as still in memory", v.Alive, n)
	}
	if v.Layers != 2 || len(v.Lines) != 2 || v.Lines[0] != n || v.Lines[1] != n {
		t.Errorf("%d layer buttons, live-memory lines with %v points; want 2 lines of %d", v.Layers, v.Lines, n)
	}
	if !strings.Contains(v.Summary, "bits per character") || !strings.Contains(v.Summary, "layer 2") {
		t.Errorf("summary %q", v.Summary)
	}
	// One figure of the memories held at the end (the chart's, from the scored text), and
	// the chart's legend has a key of each line's colour.
	if !strings.Contains(v.Stats, "tokens at") || strings.Contains(v.Stats, "held") {
		t.Errorf("stats line %q: want the speed, not a second count of the memories held", v.Stats)
	}
	if len(v.Keys) != 2 || strings.Join(v.Keys, " ") != strings.Join(v.LineStyle, " ") || len(v.Ends) != 2 ||
		!regexp.MustCompile(`^layer 1: \d+ held at the end$`).MatchString(v.Ends[0]) || !strings.HasPrefix(v.Ends[1], "layer 2: ") {
		t.Errorf("chart legend: keys %v for lines %v, texts %q", v.Keys, v.LineStyle, v.Ends)
	}
	v1, err := browser.Layer(tab, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(v1.Summary, "layer 1") || strings.Join(v1.BGs, " ") == strings.Join(v.BGs, " ") {
		t.Errorf("layer 1 shows the same colours as layer 2 (summary %q)", v1.Summary)
	}
	tip, err := browser.Hover(tab, 5)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tooltip: %s", tip)
	if !strings.Contains(tip, "span ") || !strings.Contains(tip, "age ") || !strings.Contains(tip, "bits") {
		t.Errorf("tooltip %q: want span, age and bits", tip)
	}

	// A pasted text, without generating.
	pasted := "In the beginning was the Word.\nAnd the Word was with God."
	v, err = browser.Score(tab, pasted, time.Minute)
	if err != nil || v.Error != "" || v.Text != pasted || v.Cells != len(pasted) {
		t.Fatalf("pasted text: %v, error %q, shows %q in %d cells", err, v.Error, v.Text, v.Cells)
	}
	if v.Out != "" || v.Stats != "" {
		t.Errorf("the last generation stays above a pasted text's view: %q, %q", v.Out, v.Stats)
	}
	// A text the server refuses: the error, and no earlier view under it.
	v, err = browser.Score(tab, strings.Repeat("long ", 2000), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(v.Error, "10000 tokens long") || v.Memory || v.Cells != 0 {
		t.Errorf("a refused text: error %q, view shown %v with %d tokens", v.Error, v.Memory, v.Cells)
	}
	// A bad value: a message for the browser user, not about flags or fields.
	v, err = browser.Generate(tab, "x", 100000, 1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(v.Error, "New tokens = 100000") || strings.Contains(v.Error, "--") || strings.Contains(v.Error, "max_new_tokens") {
		t.Errorf("error message %q", v.Error)
	}
	if v.Memory || v.Out != "x" {
		t.Errorf("a failed generation leaves a view shown (%v) or other text (%q)", v.Memory, v.Out)
	}
	if os.Getenv("XSPAN_BROWSER_SHOT") != "" {
		if png, err := browser.Screenshot(tab); err == nil {
			os.WriteFile(os.Getenv("XSPAN_BROWSER_SHOT"), png, 0o644)
		}
	}
}

// startLMServer serves m on a loopback port until the test ends.
func startLMServer(t *testing.T, m generate.Model) (string, *serve.Server) {
	t.Helper()
	cfg := serve.DefaultConfig()
	cfg.PromptBlock, cfg.Grace = 16, 2*time.Second
	srv, err := serve.New(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe(ctx, "127.0.0.1:0", func(a string) { addrc <- a }) }()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("server did not start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("server did not shut down")
		}
	})
	return "http://" + addr, srv
}
