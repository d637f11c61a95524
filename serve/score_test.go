package serve

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"xspan/generate/gentest"
	"xspan/spanview"
	"xspan/tokenize"
)

// scoringModel is a gentest.Model that scores: token i gets span i in layer 0 and 2i in
// layer 1, bits 1 each, and the last third of the tokens are alive.
type scoringModel struct {
	gentest.Model
	calls int
}

func (m *scoringModel) Score(ctx context.Context, ids []int64) (*spanview.Score, error) {
	m.calls++
	n := len(ids)
	s := &spanview.Score{Layers: 2, MaxSpan: 64, Ramp: 4, Expire: true, Live: [][]int{make([]int, n), make([]int, n)}}
	for i, id := range ids {
		b := 1.0
		t := spanview.Token{ID: int(id), Text: string(m.Vocab().Decode([]uint32{uint32(id)})), Spans: []float32{float32(i), float32(2 * i)},
			Alive: []bool{i >= 2*n/3, i >= n/2}}
		if i > 0 {
			t.Bits = &b
		}
		s.Tokens = append(s.Tokens, t)
		s.Live[0][i], s.Live[1][i] = min(i+1, 5), min(i+1, 7)
	}
	s.Finish()
	return s, nil
}

func postJSON(t *testing.T, url, path, body string, header ...string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// POST /v1/score returns the scorer's picture of a text as JSON, within the prompt cap,
// and says so when the model cannot score.
func TestServerScore(t *testing.T) {
	m := &scoringModel{}
	url, srv := startServer(t, m, func(c *Config) { c.MaxPromptTokens = 50 })
	code, _, body := postJSON(t, url, "/v1/score", `{"text": "Hello, world"}`)
	if code != 200 {
		t.Fatalf("score: %d %s", code, body)
	}
	var s spanview.Score
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatal(err)
	}
	if len(s.Tokens) != 12 || s.Tokens[4].Text != "o" || s.Tokens[4].Spans[1] != 8 || s.Tokens[0].Bits != nil ||
		*s.Tokens[1].Bits != 1 || !s.Tokens[11].Alive[0] || s.Tokens[0].Alive[0] || len(s.Live) != 2 || s.Live[1][11] != 7 {
		t.Fatalf("score: %s", body)
	}
	if s.BPC == nil || *s.BPC != 1 || s.ScoredChars != 11 || s.Layers != 2 || s.MaxSpan != 64 {
		t.Fatalf("bpc %v over %d chars, %d layers, L %v", s.BPC, s.ScoredChars, s.Layers, s.MaxSpan)
	}
	for _, c := range []struct {
		body string
		code int
		want string
	}{
		{`{"text": ""}`, 400, "text is empty"},
		{`{"text": "` + strings.Repeat("x", 51) + `"}`, 400, "text of 51 tokens: over the limit of 50"},
		{`{"text": "a", "prompt": "b"}`, 400, "unknown field"},
		{`{"text": 3}`, 400, "bad JSON"},
	} {
		code, _, body := postJSON(t, url, "/v1/score", c.body)
		var e struct{ Error string } // the native API's shape
		if code != c.code || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error, c.want) {
			t.Errorf("%s: %d %s; want %d with %q", c.body, code, body, c.code, c.want)
		}
	}
	if m.calls != 1 {
		t.Errorf("the model scored %d texts, want 1", m.calls)
	}
	if c := srv.Counters(); c.Completed != 1 || c.Running != 0 || c.Queued != 0 {
		t.Errorf("counters %+v", c)
	}
	// Unknown characters of a char vocabulary: named, without the CLI's flags.
	chars, _ := tokenize.NewChar([]rune("abc "))
	url2, _ := startServer(t, &scoringModel{Model: gentest.Model{Vocabulary: chars}})
	code, _, body = postJSON(t, url2, "/v1/score", `{"text": "abcz"}`)
	if code != 400 || !strings.Contains(string(body), `outside the model's vocabulary: 'z'`) {
		t.Errorf("unknown chars: %d %s", code, body)
	}
	// A model that cannot score.
	url3, _ := startServer(t, &gentest.Model{})
	code, _, body = postJSON(t, url3, "/v1/score", `{"text": "abc"}`)
	if code != 404 || !strings.Contains(string(body), "cannot score") {
		t.Errorf("no scorer: %d %s", code, body)
	}
	resp, err := http.Get(url3 + "/v1/model")
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		ID    string `json:"id"`
		Score bool   `json:"score"`
	}
	json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if info.ID != "xspan" || info.Score {
		t.Errorf("/v1/model of a model without scoring: %+v", info)
	}
}

// CORS is off unless AllowedOrigins names an origin: then that origin's requests pass,
// get Access-Control-Allow-Origin, and its preflights are answered; others stay refused.
func TestServerAllowedOrigins(t *testing.T) {
	url, _ := startServer(t, &scoringModel{}, func(c *Config) { c.AllowedOrigins = []string{"https://notebook.example:8443"} })
	code, h, body := postJSON(t, url, "/v1/score", `{"text": "hi"}`, "Origin", "https://notebook.example:8443")
	if code != 200 || h.Get("Access-Control-Allow-Origin") != "https://notebook.example:8443" || !strings.Contains(h.Get("Vary"), "Origin") {
		t.Errorf("allowed origin: %d %v %s", code, h, body)
	}
	code, h, _ = postJSON(t, url, "/v1/score", `{"text": "hi"}`, "Origin", "https://evil.example")
	if code != 403 || h.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("other origin: %d %v", code, h)
	}
	for _, c := range []struct {
		origin string
		code   int
	}{{"https://notebook.example:8443", 204}, {"https://evil.example", 403}} {
		req, _ := http.NewRequest("OPTIONS", url+"/v1/generate", nil)
		req.Header.Set("Origin", c.origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		allowed := resp.Header.Get("Access-Control-Allow-Methods")
		if resp.StatusCode != c.code || (c.code == 204) != strings.Contains(allowed, "POST") {
			t.Errorf("preflight from %s: %d, methods %q", c.origin, resp.StatusCode, allowed)
		}
	}
	// Without the option, the same origin is refused and nothing says CORS.
	url2, _ := startServer(t, &scoringModel{})
	code, h, _ = postJSON(t, url2, "/v1/score", `{"text": "hi"}`, "Origin", "https://notebook.example:8443")
	if code != 403 || h.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("no allowed origins: %d %v", code, h)
	}
}
