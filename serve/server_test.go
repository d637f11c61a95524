package serve

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"xspan/generate"
	"xspan/generate/gentest"
	"xspan/tokenize"
)

// config is DefaultConfig changed by set, with 2 s of grace.
func config(set ...func(c *Config)) Config {
	c := DefaultConfig()
	c.Grace = 2 * time.Second
	for _, f := range set {
		f(&c)
	}
	return c
}

// startServer serves a Server of config(set...) on a loopback port and stops it at the
// end of the test.
func startServer(t *testing.T, m generate.Model, set ...func(c *Config)) (string, *Server) {
	t.Helper()
	srv, err := New(m, config(set...))
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
		case err := <-done:
			if err != nil {
				t.Errorf("shutdown: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("server did not shut down")
		}
	})
	return "http://" + addr, srv
}

func post(t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url+"/v1/generate", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func TestServerFullAnswer(t *testing.T) {
	m := &gentest.Model{}
	url, srv := startServer(t, m)
	code, body := post(t, url, `{"prompt":"Hello","max_new_tokens":40,"temperature":0.8,"top_k":20,"top_p":0.9,"seed":5}`)
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	var r Response
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	if r.NewTokens != 40 || r.PromptTokens != 5 || r.Seed != 5 || r.Stop != generate.StopLength || len(r.Live) != 2 || r.TokensPerSec <= 0 {
		t.Errorf("response %s", body)
	}
	// The same request through Generate gives the same text.
	want, err := gentest.Generate(t, gentest.NewStepper(256, 2, 64, true), "Hello", generate.Options{MaxNewTokens: 40, Sampler: generate.SamplerConfig{Temperature: 0.8, TopK: 20, TopP: 0.9, Seed: 5}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Text != want.Text {
		t.Errorf("server text %q, Generate %q", r.Text, want.Text)
	}
	code, body2 := post(t, url, `{"prompt":"Hello","max_new_tokens":40,"temperature":0.8,"top_k":20,"top_p":0.9,"seed":5}`)
	var r2 Response
	json.Unmarshal(body2, &r2)
	if code != 200 || r2.Text != r.Text {
		t.Errorf("same seed twice: %q vs %q", r2.Text, r.Text)
	}
	// Without a seed the server picks one and reports it.
	_, body = post(t, url, `{"prompt":"Hi","max_new_tokens":3}`)
	json.Unmarshal(body, &r)
	if r.NewTokens != 3 || r.Seed < 0 {
		t.Errorf("defaults: %s", body)
	}
	if c := srv.Counters(); c.Completed != 3 || c.Running != 0 || c.Queued != 0 {
		t.Errorf("counters %+v", c)
	}
	if active, _, made := m.Stats(); active != 0 || made != 3 {
		t.Errorf("steppers: %d still open, %d made; want 0, 3", active, made)
	}
}

// sseEvent is one Server-Sent Event.
type sseEvent struct{ name, data string }

func readEvents(r io.Reader, each func(sseEvent) bool) error {
	sc := bufio.NewScanner(r)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if !each(ev) {
				return nil
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			ev.name = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.data += line[6:]
		}
	}
	return sc.Err()
}

func TestServerStream(t *testing.T) {
	url, _ := startServer(t, &gentest.Model{})
	resp, err := http.Post(url+"/v1/generate", "application/json", strings.NewReader(`{"prompt":"Hello","max_new_tokens":30,"seed":9,"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var text strings.Builder
	var tokens int
	var done *Response
	err = readEvents(resp.Body, func(ev sseEvent) bool {
		switch ev.name {
		case "token":
			var tok generate.Token
			if err := json.Unmarshal([]byte(ev.data), &tok); err != nil {
				t.Fatalf("token event %q: %v", ev.data, err)
			}
			if tok.ID >= 0 {
				if tok.Index != tokens {
					t.Errorf("token index %d, want %d", tok.Index, tokens)
				}
				tokens++
			}
			text.WriteString(tok.Text)
		case "done":
			done = new(Response)
			if err := json.Unmarshal([]byte(ev.data), done); err != nil {
				t.Fatal(err)
			}
			return false
		default:
			t.Fatalf("unexpected event %+v", ev)
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if done == nil || tokens != 30 || done.NewTokens != 30 || done.Seed != 9 {
		t.Fatalf("stream: %d tokens, done %+v", tokens, done)
	}
	want, _ := gentest.Generate(t, gentest.NewStepper(256, 2, 64, true), "Hello", generate.Options{MaxNewTokens: 30, Sampler: generate.SamplerConfig{Temperature: 1, TopP: 1, Seed: 9}}, nil)
	if text.String() != want.Text {
		t.Errorf("streamed %q, want %q", text.String(), want.Text)
	}
}

func TestServerBadRequests(t *testing.T) {
	chars, _ := tokenize.NewChar([]rune("abc "))
	url, _ := startServer(t, &gentest.Model{Vocabulary: chars}, func(c *Config) { c.MaxNewTokens = 100; c.MaxBodyBytes = 200 })
	for _, c := range []struct {
		body string
		code int
		want string
	}{
		{`{"prompt":"ab"`, 400, "bad JSON"},
		{`not json`, 400, "bad JSON"},
		{`{"prompt":"ab","max_tokens":3}`, 400, "unknown field"},
		{`{"prompt":"ab","temperature":"hot"}`, 400, "bad JSON"},
		{`{"prompt":"ab"} {"prompt":"cd"}`, 400, "more than one value"},
		{`{"prompt":"ab","max_new_tokens":0}`, 400, "max_new_tokens = 0"},
		{`{"prompt":"ab","max_new_tokens":101}`, 400, "[1, 100]"},
		{`{"prompt":"ab","temperature":-0.5}`, 400, "temperature"},
		{`{"prompt":"ab","top_k":-1}`, 400, "top_k"},
		{`{"prompt":"ab","top_p":0}`, 400, "top_p"},
		{`{"prompt":"ab","seed":-3}`, 400, "seed"},
		{`{"prompt":"abΩ"}`, 400, "outside the model's vocabulary"},
		{`{"prompt":"` + strings.Repeat("a", 300) + `"}`, 413, "over 200 bytes"},
	} {
		code, body := post(t, url, c.body)
		var e struct{ Error string }
		json.Unmarshal(body, &e)
		if code != c.code || !strings.Contains(e.Error, c.want) {
			t.Errorf("%.40s: %d %q; want %d with %q", c.body, code, e.Error, c.code, c.want)
		}
	}
	resp, err := http.Get(url + "/v1/generate")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/generate: %d", resp.StatusCode)
	}
	resp, _ = http.Get(url + "/nope")
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("GET /nope: %d", resp.StatusCode)
	}
}

func TestServerInfoPages(t *testing.T) {
	url, _ := startServer(t, &gentest.Model{}, func(c *Config) { c.MaxConcurrent = 3 })
	get := func(path string) (string, string) {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return resp.Header.Get("Content-Type"), string(b)
	}
	if _, body := get("/healthz"); !strings.Contains(body, `"status":"ok"`) || !strings.Contains(body, `"running":0`) {
		t.Errorf("/healthz: %s", body)
	}
	_, body := get("/v1/model")
	var info struct {
		Model map[string]any
		Vocab struct {
			Kind string
			Size int
		}
		Limits map[string]any
	}
	if err := json.Unmarshal([]byte(body), &info); err != nil {
		t.Fatal(err)
	}
	if info.Model["step"] != 42.0 || info.Vocab.Kind != "byte" || info.Vocab.Size != 256 || info.Limits["max_concurrent"] != 3.0 {
		t.Errorf("/v1/model: %s", body)
	}
	ct, page := get("/")
	if !strings.HasPrefix(ct, "text/html") || !strings.Contains(page, "v1/generate") || !strings.Contains(page, "<textarea") {
		t.Errorf("/: %s %.100s", ct, page)
	}
}

func TestServerConcurrency(t *testing.T) {
	m := &gentest.Model{Delay: time.Millisecond}
	url, srv := startServer(t, m, func(c *Config) { c.MaxConcurrent = 2; c.MaxQueue = 10 })
	const n = 8
	var wg sync.WaitGroup
	texts := make([]string, n)
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() {
			code, body := post(t, url, fmt.Sprintf(`{"prompt":"req %d","max_new_tokens":20,"seed":%d}`, i%2, i%2))
			var r Response
			json.Unmarshal(body, &r)
			codes[i], texts[i] = code, r.Text
		})
	}
	wg.Wait()
	for i := range n {
		if codes[i] != 200 {
			t.Errorf("request %d: status %d", i, codes[i])
		}
		if texts[i] != texts[i%2] {
			t.Errorf("request %d: text %q differs from request %d's %q: requests share memory?", i, texts[i], i%2, texts[i%2])
		}
	}
	if texts[0] == texts[1] {
		t.Errorf("different prompts and seeds gave the same text")
	}
	if _, maxActive, made := m.Stats(); maxActive > 2 || made != n {
		t.Errorf("%d generations ran at once (limit 2), %d made", maxActive, made)
	}
	if c := srv.Counters(); c.Completed != n || c.Rejected != 0 {
		t.Errorf("counters %+v", c)
	}
}

func TestServerQueueFull(t *testing.T) {
	m := &gentest.Model{Delay: 20 * time.Millisecond}
	url, srv := startServer(t, m, func(c *Config) { c.MaxConcurrent = 1; c.MaxQueue = 1 })
	slow := `{"prompt":"x","max_new_tokens":50,"seed":1}` // about 1 s
	results := make(chan int, 2)
	for range 2 { // one runs, one waits
		go func() { code, _ := post(t, url, slow); results <- code }()
	}
	deadline := time.Now().Add(5 * time.Second)
	for c := srv.Counters(); c.Running+c.Queued < 2; c = srv.Counters() {
		if time.Now().After(deadline) {
			t.Fatalf("requests not admitted: %+v", c)
		}
		time.Sleep(5 * time.Millisecond)
	}
	code, body := post(t, url, slow)
	if code != http.StatusTooManyRequests || !strings.Contains(string(body), "busy") {
		t.Errorf("third request: %d %s; want 429", code, body)
	}
	for range 2 {
		if code := <-results; code != 200 {
			t.Errorf("admitted request: %d", code)
		}
	}
	if c := srv.Counters(); c.Rejected != 1 || c.Completed != 2 {
		t.Errorf("counters %+v", c)
	}
}

func TestServerClientCancels(t *testing.T) {
	m := &gentest.Model{Delay: 2 * time.Millisecond}
	url, srv := startServer(t, m, func(c *Config) { c.MaxNewTokens = 100000 })
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", url+"/v1/generate", strings.NewReader(`{"prompt":"x","max_new_tokens":100000,"stream":true}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	readEvents(resp.Body, func(ev sseEvent) bool {
		if ev.name == "token" {
			got++
		}
		return got < 5
	})
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for srv.Counters().Cancelled == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("generation not stopped after the client left: %+v", srv.Counters())
		}
		time.Sleep(5 * time.Millisecond)
	}
	feeds := m.Feeds.Load()
	if feeds > 2000 {
		t.Errorf("%d feeds: generation ran on after the client left", feeds)
	}
	time.Sleep(50 * time.Millisecond)
	if after := m.Feeds.Load(); after != feeds {
		t.Errorf("feeds went on after cancellation: %d → %d", feeds, after)
	}
	if active, _, _ := m.Stats(); active != 0 {
		t.Errorf("%d steppers still open", active)
	}
	// A request cancelled while queued leaves no trace but the counter.
	if c := srv.Counters(); c.Running != 0 || c.Queued != 0 || c.Completed != 0 {
		t.Errorf("counters %+v", c)
	}
}

func TestListenAndServeShutdownStopsLongRequests(t *testing.T) {
	m := &gentest.Model{Delay: 2 * time.Millisecond}
	srv, err := New(m, config(func(c *Config) { c.MaxNewTokens = 1000000; c.Grace = 100 * time.Millisecond }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- srv.ListenAndServe(ctx, "127.0.0.1:0", func(a string) { addrc <- a })
	}()
	url := "http://" + <-addrc
	resp, err := http.Post(url+"/v1/generate", "application/json", strings.NewReader(`{"prompt":"x","max_new_tokens":1000000,"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := make(chan []sseEvent, 1)
	go func() {
		// Read to the end of the stream: its last event must say why it ended.
		var evs []sseEvent
		readEvents(resp.Body, func(ev sseEvent) bool { evs = append(evs, ev); return true })
		events <- evs
	}()
	for srv.Counters().Running == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done: // Shutdown timed out after the grace period, then closed
	case <-time.After(5 * time.Second):
		t.Fatal("ListenAndServe did not return after shutdown")
	}
	var evs []sseEvent
	select {
	case evs = <-events:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end at shutdown")
	}
	if len(evs) < 2 || evs[0].name != "token" {
		t.Fatalf("stream: %+v", evs)
	}
	if last := evs[len(evs)-1]; last.name != "error" || !strings.Contains(last.data, "server shutting down") {
		t.Errorf("last event %+v; want an error event saying the server is shutting down", last)
	}
	if c := srv.Counters(); c.Interrupted != 1 || c.Cancelled != 0 || c.Running != 0 {
		t.Errorf("counters %+v; want 1 interrupted", c)
	}
	if _, err := http.Get(url + "/healthz"); err == nil {
		t.Errorf("server still answers after shutdown")
	}
}

// The native API: an empty prompt, stop sequences and log-probabilities.
func TestServerStopLogProbsEmptyPrompt(t *testing.T) {
	url, _ := startServer(t, &gentest.Model{})
	var empty, newline Response
	_, b := post(t, url, `{"prompt":"","max_new_tokens":30,"seed":4}`)
	json.Unmarshal(b, &empty)
	_, b = post(t, url, `{"prompt":"\n","max_new_tokens":30,"seed":4}`)
	json.Unmarshal(b, &newline)
	if empty.NewTokens != 30 || empty.PromptTokens != 1 || empty.Text != newline.Text {
		t.Errorf("empty prompt: %+v; want the text after a newline %q", empty.Result, newline.Text)
	}
	stop := string([]rune(newline.Text)[10:12])
	body := `{"prompt":"\n","max_new_tokens":30,"seed":4,"logprobs":2,"stop":["` + jsonEscape(stop) + `"]}`
	code, b := post(t, url, body)
	var r Response
	json.Unmarshal(b, &r)
	if want := newline.Text[:strings.Index(newline.Text, stop)]; code != 200 || r.Text != want || r.Stop != generate.StopSequence || len(r.LogProbs) != r.NewTokens || len(r.LogProbs[0].Top) != 2 {
		t.Errorf("stop %q: %d %s; want text %q", stop, code, b, want)
	}
	for _, c := range []struct{ body, want string }{
		{`{"prompt":"a","stop":["a","b","c","d","e"]}`, "5 stop sequences: at most 4"},
		{`{"prompt":"a","stop":[""]}`, "want 1 to 256 bytes"},
		{`{"prompt":"a","logprobs":6}`, "logprobs = 6: must lie in [0, 5]"},
		{`{"prompt":"a","stop":"x"}`, "bad JSON"},
	} {
		code, b := post(t, url, c.body)
		if code != 400 || !strings.Contains(string(b), c.want) {
			t.Errorf("%s: %d %s; want 400 with %q", c.body, code, b, c.want)
		}
	}
}

func jsonEscape(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}
