// Command shoot takes the README's screenshot of the page that xspan serve shows at /
// (make screenshot runs it against a served checkpoint): it waits for the server, loads
// the page in headless Chromium, generates with a fixed seed, waits for the picture of
// what the model remembers, hovers over one character so that its tooltip shows, and
// writes a PNG of the whole page.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	"xspan/internal/browser"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8080/", "the page")
	prompt := flag.String("prompt", "And God said unto Moses, ", "the prompt")
	n := flag.Int("new-tokens", 300, "tokens to generate")
	seed := flag.Int64("seed", 1, "sampling seed")
	hover := flag.Int("hover", -1, "token to hover over, from 0 (-1: the last of the prompt)")
	layer := flag.Int("layer", 0, "the layer to show, from 1 (0: the page's default, the last)")
	width := flag.Int("width", 1000, "window width in pixels")
	out := flag.String("out", "page.png", "the PNG to write")
	flag.Parse()
	if err := run(*url, *prompt, *n, *seed, *hover, *layer, *width, *out); err != nil {
		fmt.Fprintln(os.Stderr, "shoot:", err)
		os.Exit(1)
	}
}

func run(url, prompt string, n int, seed int64, hover, layer, width int, out string) error {
	exe := browser.Find()
	if exe == "" {
		return fmt.Errorf("no chromium installed: apt-get install chromium")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		resp, err := http.Get(url + "healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no server answered within a minute (%v)", url, err)
		}
	}
	dir, err := os.MkdirTemp("", "xspan-shoot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tab, closeBrowser := browser.Start(ctx, exe, dir, width, 900)
	defer closeBrowser()
	if err := browser.Open(tab, url); err != nil {
		return err
	}
	v, err := browser.Generate(tab, prompt, n, seed, 2*time.Minute)
	if err != nil {
		return err
	}
	if v.Error != "" {
		return fmt.Errorf("the page says: %s", v.Error)
	}
	if layer > 0 {
		if v, err = browser.Layer(tab, layer-1); err != nil {
			return err
		}
	}
	if hover < 0 {
		hover = len([]rune(prompt)) - 2
	}
	if _, err := browser.Hover(tab, hover); err != nil {
		return err
	}
	png, err := browser.Screenshot(tab)
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s (%d bytes): %d tokens shown, %d still in memory in the layer shown\n", out, len(png), v.Cells, v.Alive)
	return nil
}
