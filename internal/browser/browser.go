// Package browser drives a headless Chromium (Debian's chromium) through
// github.com/chromedp/chromedp against the page that xspan serve shows at /: it loads
// the page, generates or pastes a text, and reads back what the page drew. The browser
// test of package generate and the README's screenshot (make screenshot) use it; the
// xspan binary does not.
package browser

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/chromedp/chromedp"
)

// Find returns the path of a Chromium or Chrome binary on PATH ($XSPAN_CHROMIUM first),
// or "" when there is none.
func Find() string {
	names := []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}
	if p := os.Getenv("XSPAN_CHROMIUM"); p != "" {
		names = append([]string{p}, names...)
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return ""
}

// Start starts a headless browser (exe) with a fresh profile in userDir and returns a
// context for its first tab; cancel closes the browser. Background networking, QUIC,
// component updates and sync are off, so the browser only talks to the page's server.
func Start(ctx context.Context, exe, userDir string, width, height int) (context.Context, context.CancelFunc) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(userDir),
		chromedp.WindowSize(width, height),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tab, cancelTab := chromedp.NewContext(actx)
	return tab, func() { cancelTab(); cancelAlloc() }
}

// View is what the page shows after a text was scored.
type View struct {
	Card     string   `json:"card"`     // the model card's text
	Out      string   `json:"out"`      // the generated text box: prompt and new text
	Text     string   `json:"text"`     // the characters of the spans view, joined
	Cells    int      `json:"cells"`    // tokens shown
	Colours  int      `json:"colours"`  // distinct background colours among them
	Coloured int      `json:"coloured"` // tokens with a background colour
	Alive    int      `json:"alive"`    // tokens marked as still in memory
	Layers   int      `json:"layers"`   // layer buttons
	Lines    []int    `json:"lines"`    // points of each layer's live-memory line
	Summary  string   `json:"summary"`  // the line above the text
	Error    string   `json:"error"`    // the error box's text ("" when hidden)
	BGs      []string `json:"bgs"`      // each token's background colour
	Stats    string   `json:"stats"`    // the line under the generated text
	Memory   bool     `json:"memory"`   // the spans view is shown
	// The chart's legend: each key's colour, each layer's line colour, and the text
	// beside each key.
	Keys      []string `json:"keys"`
	LineStyle []string `json:"line_colours"`
	Ends      []string `json:"ends"`
}

const readView = `(() => {
  const cells = [...document.querySelectorAll("#view .xs-t")];
  const bgs = cells.map(c => c.style.background || "");
  const err = document.getElementById("error");
  const sum = document.querySelector("#view .xs-summary");
  return {
    card: document.getElementById("card").textContent,
    out: document.getElementById("out").textContent,
    text: cells.map(c => c.textContent.replace("\u21b5", "")).join(""),
    cells: cells.length,
    colours: new Set(bgs.filter(b => b)).size,
    coloured: bgs.filter(b => b).length,
    alive: document.querySelectorAll("#view .xs-t.xs-alive").length,
    layers: document.querySelectorAll("#view .xs-layers button").length,
    lines: [...document.querySelectorAll("#view polyline.xs-live")].map(p => p.getAttribute("points").trim().split(/\s+/).length),
    summary: sum ? sum.textContent : "",
    error: err.style.display === "block" ? err.textContent : "",
    bgs,
    stats: document.getElementById("stats").textContent,
    memory: !document.getElementById("memory").hidden,
    keys: [...document.querySelectorAll("#view line.xs-key")].map(l => l.getAttribute("stroke")),
    line_colours: [...document.querySelectorAll("#view polyline.xs-live")].map(l => l.getAttribute("stroke")),
    ends: [...document.querySelectorAll("#view text.xs-end")].map(t => t.textContent),
  };
})()`

// Read returns what the page shows now.
func Read(ctx context.Context) (*View, error) {
	v, err := chromedp.Run(ctx, chromedp.Evaluate[View](readView))
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// Open loads the page at url and waits for its model card.
func Open(ctx context.Context, url string) error {
	return chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("#card div")))
}

// Generate types prompt, sets the number of new tokens and the seed, clicks Generate,
// and waits until the page has drawn what the model remembers of the text (or shown an
// error), within timeout.
func Generate(ctx context.Context, prompt string, newTokens int, seed int64, timeout time.Duration) (*View, error) {
	err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS("#prompt"), prompt),
		chromedp.SetValue(chromedp.CSS("#n"), fmt.Sprint(newTokens)),
		chromedp.SetValue(chromedp.CSS("#seed"), fmt.Sprint(seed)),
		chromedp.Click(chromedp.CSS("#go")),
	)
	if err != nil {
		return nil, err
	}
	return wait(ctx, timeout)
}

// Score types text into the prompt box and clicks the button that shows what the model
// remembers of it, without generating.
func Score(ctx context.Context, text string, timeout time.Duration) (*View, error) {
	err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS("#prompt"), text),
		chromedp.Click(chromedp.CSS("#score")),
	)
	if err != nil {
		return nil, err
	}
	return wait(ctx, timeout)
}

// wait polls the page until the spans view has its chart or the error box shows. The
// page clears the view when a generation or a score starts (the click comes before the
// first poll returns: the click's event runs before chromedp's next evaluation).
func wait(ctx context.Context, timeout time.Duration) (*View, error) {
	deadline := time.Now().Add(timeout)
	for {
		v, err := Read(ctx)
		if err != nil {
			return nil, err
		}
		if v.Error != "" || (v.Cells > 0 && len(v.Lines) > 0) {
			return v, nil
		}
		if time.Now().After(deadline) {
			return v, errors.New("browser: the page drew nothing within " + timeout.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Layer clicks the button of layer l (0-based) and returns the view.
func Layer(ctx context.Context, l int) (*View, error) {
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#view .xs-layers button[data-layer="%d"]`, l)))); err != nil {
		return nil, err
	}
	return Read(ctx)
}

// Hover moves the mouse over token i of the spans view and returns the tooltip's text.
func Hover(ctx context.Context, i int) (string, error) {
	sel := fmt.Sprintf(`#view .xs-t[data-i="%d"]`, i)
	err := chromedp.Do(ctx,
		chromedp.ScrollIntoView(chromedp.CSS(sel)),
		chromedp.Click(chromedp.CSS(sel)), // moves the mouse there (clicking text does nothing)
	)
	if err != nil {
		return "", err
	}
	return chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#view .xs-tip"), chromedp.NodeVisible))
}

// Screenshot captures the whole page as a PNG.
func Screenshot(ctx context.Context) ([]byte, error) {
	return chromedp.Run(ctx, chromedp.FullScreenshot(100))
}
