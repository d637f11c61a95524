package serve

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"xspan/generate/gentest"
)

// dial opens a raw connection to a test server's URL.
func dial(t *testing.T, url string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer reports whether the server closed c within d: a read ends with EOF or a
// reset, not with the reader's own deadline.
func closedByServer(c net.Conn, d time.Duration) error {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("connection still open after %v", d)
	}
	return nil
}

// trickle writes one byte of s every period until a write fails or stop closes.
func trickle(c net.Conn, s string, period time.Duration, stop <-chan struct{}) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for i := 0; ; i = (i + 1) % len(s) {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		if _, err := c.Write([]byte{s[i]}); err != nil {
			return
		}
	}
}

// Many clients trickling request bodies on loopback: the server keeps at most MaxConns
// open by closing the oldest of them, and /healthz answers throughout. Before the cap,
// every one of them stayed open (the body had no deadline) until descriptors ran out.
func TestServerSlowClients(t *testing.T) {
	const maxConns, slow = 24, 300
	url, srv := startServer(t, &gentest.Model{}, func(c *Config) {
		c.MaxConcurrent = 1
		c.MaxQueue = 1
		c.MaxConns = maxConns
		c.ReadTimeout = time.Minute
	})
	host := strings.TrimPrefix(url, "http://")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var closed atomic.Int64
	conns := make([]net.Conn, 0, slow)
	defer func() {
		close(stop)
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	}()
	for range slow {
		c := dial(t, url)
		conns = append(conns, c)
		fmt.Fprintf(c, "POST /v1/generate HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", host)
		wg.Go(func() { trickle(c, `"prompt":"a","x":"`+strings.Repeat("b", 50), 200*time.Millisecond, stop) })
		wg.Go(func() {
			c.Read(make([]byte, 1)) // returns when the server closes it, or at the end
			select {
			case <-stop:
			default:
				closed.Add(1)
			}
		})
	}
	client := &http.Client{Timeout: 10 * time.Second}
	var worst time.Duration
	for range 5 {
		t0 := time.Now()
		resp, err := client.Get(url + "/healthz")
		if err != nil {
			t.Fatalf("/healthz with %d slow clients: %v", slow, err)
		}
		var h Counters
		err = json.NewDecoder(resp.Body).Decode(&h)
		resp.Body.Close()
		worst = max(worst, time.Since(t0))
		if err != nil || resp.StatusCode != 200 || h.Connections > maxConns {
			t.Errorf("/healthz: %d %+v %v; want 200 and at most %d connections", resp.StatusCode, h, err, maxConns)
		}
		time.Sleep(50 * time.Millisecond)
	}
	deadline := time.Now().Add(10 * time.Second)
	for closed.Load() < slow-maxConns && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	c := srv.Counters()
	if n := closed.Load(); n < slow-maxConns || c.Evicted < slow-maxConns || c.Connections > maxConns {
		t.Errorf("%d of %d slow connections closed by the server, counters %+v; want at least %d closed and at most %d open", n, slow, c, slow-maxConns, maxConns)
	}
	t.Logf("%d slow clients, at most %d connections: %d closed by the server; /healthz answered in at most %v", slow, maxConns, closed.Load(), worst.Round(time.Microsecond))
}

// A body or a header that arrives too slowly ends its connection after ReadTimeout;
// before, a trickled body never timed out.
func TestServerReadTimeouts(t *testing.T) {
	url, srv := startServer(t, &gentest.Model{}, func(c *Config) { c.ReadTimeout = 300 * time.Millisecond })
	host := strings.TrimPrefix(url, "http://")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()

	body := dial(t, url)
	fmt.Fprintf(body, "POST /v1/generate HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", host)
	wg.Go(func() { trickle(body, " ", 50*time.Millisecond, stop) }) // valid JSON space, forever
	body.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(body), nil)
	if err != nil {
		t.Fatalf("trickled body: no answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(b), "not received within 300ms") {
		t.Errorf("trickled body: %d %s; want 408", resp.StatusCode, b)
	}
	if err := closedByServer(body, 5*time.Second); err != nil {
		t.Errorf("trickled body: %v", err)
	}

	header := dial(t, url)
	fmt.Fprintf(header, "GET /healthz HTTP/1.1\r\nHost: %s\r\n", host)
	wg.Go(func() { trickle(header, "X-Slow: yes\r\n", 50*time.Millisecond, stop) })
	if err := closedByServer(header, 5*time.Second); err != nil {
		t.Errorf("trickled header: %v", err)
	}
	if c := srv.Counters(); c.TimedOut != 1 || c.Running != 0 {
		t.Errorf("counters %+v; want 1 timed out", c)
	}
}

// A kept-alive connection without a next request closes after IdleTimeout (it was 2 min).
func TestServerIdleTimeout(t *testing.T) {
	url, _ := startServer(t, &gentest.Model{}, func(c *Config) { c.IdleTimeout = 200 * time.Millisecond })
	c := dial(t, url)
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", strings.TrimPrefix(url, "http://"))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/healthz: %v %v", resp, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, resp.ContentLength))
	if err := closedByServer(c, 5*time.Second); err != nil {
		t.Errorf("idle connection: %v", err)
	}
}

// A client that stops reading a stream is dropped after WriteTimeout, and its
// generation stops; before, it held its generation slot for good.
func TestServerWriteTimeout(t *testing.T) {
	url, srv := startServer(t, &gentest.Model{}, func(c *Config) { c.MaxNewTokens = 5000000; c.WriteTimeout = 200 * time.Millisecond })
	c := dial(t, url)
	c.(*net.TCPConn).SetReadBuffer(4096)
	body := `{"prompt":"x","max_new_tokens":5000000,"stream":true}`
	fmt.Fprintf(c, "POST /v1/generate HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", strings.TrimPrefix(url, "http://"), len(body), body)
	// Never read: the socket buffers fill (a few MB on loopback), then writes block.
	deadline := time.Now().Add(60 * time.Second)
	for c := srv.Counters(); c.TimedOut == 0 || c.Running != 0; c = srv.Counters() {
		if time.Now().After(deadline) {
			t.Fatalf("the stalled stream was not dropped: %+v", c)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if c := srv.Counters(); c.TimedOut != 1 || c.Completed != 0 {
		t.Errorf("counters %+v", c)
	}
}

func TestServerPromptAndTemperatureBounds(t *testing.T) {
	url, _ := startServer(t, &gentest.Model{})
	limit := DefaultConfig().MaxPromptTokens
	code, body := post(t, url, `{"prompt":"`+strings.Repeat("a", limit+1)+`","max_new_tokens":1}`)
	if code != 400 || !strings.Contains(string(body), fmt.Sprintf("prompt of %d tokens: over the limit of %d", limit+1, limit)) {
		t.Errorf("prompt of %d tokens: %d %.200s; want 400", limit+1, code, body)
	}
	if code, body := post(t, url, `{"prompt":"`+strings.Repeat("a", limit)+`","max_new_tokens":1}`); code != 200 {
		t.Errorf("prompt of %d tokens: %d %.200s; want 200", limit, code, body)
	}
	url, _ = startServer(t, &gentest.Model{}, func(c *Config) { c.MaxPromptTokens = 3 })
	if code, body := post(t, url, `{"prompt":"abcd"}`); code != 400 || !strings.Contains(string(body), "over the limit of 3") {
		t.Errorf("MaxPromptTokens 3: %d %s", code, body)
	}
	// 5e-324 is greedy, as 0 is: the same text, not NaN-weighted garbage.
	texts := map[string]string{}
	for _, temp := range []string{"0", "5e-324", "1e-300"} {
		code, body := post(t, url, `{"prompt":"abc","max_new_tokens":40,"temperature":`+temp+`}`)
		var r Response
		json.Unmarshal(body, &r)
		if code != 200 {
			t.Fatalf("temperature %s: %d %s", temp, code, body)
		}
		texts[temp] = r.Text
	}
	if texts["5e-324"] != texts["0"] || texts["1e-300"] != texts["0"] {
		t.Errorf("tiny temperatures %q, %q; greedy %q", texts["5e-324"], texts["1e-300"], texts["0"])
	}
}

// The perimeter: JSON POSTs only, a Host that names this server, no other origins, no
// CORS. Each refused request would have been served before.
func TestServerPerimeter(t *testing.T) {
	url, _ := startServer(t, &gentest.Model{}, func(c *Config) { c.AllowedHosts = []string{"gen.example"} })
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(url, "http://"))
	const ok = `{"prompt":"ab","max_new_tokens":2}`
	for _, c := range []struct {
		method, path, host, ctype, origin string
		code                              int
		want                              string
	}{
		{"POST", "/v1/generate", "", "text/plain", "", 415, "send application/json"},
		{"POST", "/v1/generate", "", "application/x-www-form-urlencoded", "", 415, "send application/json"},
		{"POST", "/v1/generate", "", "multipart/form-data; boundary=x", "", 415, "send application/json"},
		{"POST", "/v1/generate", "", "", "", 415, "send application/json"},
		{"POST", "/v1/generate", "", "application/json; charset=utf-8", "", 200, "text"},
		{"POST", "/v1/generate", "evil.example:" + port, "application/json", "", 403, "--allow-host"},
		{"GET", "/healthz", "evil.example:" + port, "", "", 403, "not this server's address"},
		{"GET", "/", "evil.example", "", "", 403, "not this server's address"},
		{"GET", "/healthz", "10.1.2.3:" + port, "", "", 403, "not this server's address"},
		{"GET", "/healthz", "[::1]:" + port, "", "", 403, "not this server's address"},
		{"GET", "/healthz", "localhost:" + port, "", "", 200, "ok"},
		{"GET", "/healthz", "LOCALHOST.", "", "", 200, "ok"},
		{"GET", "/healthz", "127.0.0.1:" + port, "", "", 200, "ok"},
		{"GET", "/healthz", "gen.example", "", "", 200, "ok"},
		{"POST", "/v1/generate", "", "application/json", "http://evil.example", 403, "cross-origin"},
		{"POST", "/v1/generate", "", "application/json", "null", 403, "cross-origin"},
		{"POST", "/v1/generate", "", "application/json", "http://localhost:" + port, 403, "cross-origin"},
		{"POST", "/v1/generate", "", "application/json", "http://127.0.0.1:" + port, 200, "text"},
		{"POST", "/v1/generate", "", "application/json", "https://gen.example", 200, "text"},
		{"OPTIONS", "/v1/generate", "", "", "http://evil.example", 403, "cross-origin"},
		{"OPTIONS", "/v1/generate", "", "", "", 405, "not allowed"},
	} {
		req, _ := http.NewRequest(c.method, url+c.path, strings.NewReader(ok))
		if c.host != "" {
			req.Host = c.host
		}
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		if c.origin != "" {
			req.Header.Set("Origin", c.origin)
			req.Header.Set("Access-Control-Request-Method", "POST")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || !strings.Contains(string(b), c.want) {
			t.Errorf("%s %s host %q type %q origin %q: %d %.120s; want %d with %q", c.method, c.path, c.host, c.ctype, c.origin, resp.StatusCode, b, c.code, c.want)
		}
		for k := range resp.Header {
			if strings.HasPrefix(k, "Access-Control-") {
				t.Errorf("%s %s origin %q: CORS header %s: %s", c.method, c.path, c.origin, k, resp.Header.Get(k))
			}
		}
	}
}

// errorMessage reads an error body of either API: {"error": message} for the native
// paths, {"error": {"message": message, ...}} for the OpenAI-compatible ones.
func errorMessage(r io.Reader) (string, error) {
	var e struct{ Error json.RawMessage }
	if err := json.NewDecoder(r).Decode(&e); err != nil {
		return "", err
	}
	var msg string
	if json.Unmarshal(e.Error, &msg) == nil {
		return msg, nil
	}
	var o struct{ Message string }
	err := json.Unmarshal(e.Error, &o)
	return o.Message, err
}

// Unknown API paths and wrong methods answer in JSON, like the rest of the API.
func TestServerAPINotFoundAndMethodJSON(t *testing.T) {
	url, _ := startServer(t, &gentest.Model{})
	for _, c := range []struct {
		method, path string
		code         int
		allow, want  string
	}{
		{"GET", "/v1/nope", 404, "", "no endpoint GET /v1/nope"},
		{"POST", "/v1/", 404, "", "no endpoint POST /v1/"},
		{"GET", "/v1/generate", 405, "POST", "GET /v1/generate: method not allowed"},
		{"DELETE", "/v1/generate", 405, "POST", "method not allowed"},
		{"POST", "/v1/model", 405, "GET, HEAD", "method not allowed"},
		{"GET", "/v1/completions", 405, "POST", "method not allowed"},
		{"POST", "/v1/models", 405, "GET, HEAD", "method not allowed"},
		{"POST", "/v1/chat/completions", 404, "", "use POST /v1/completions"},
	} {
		req, _ := http.NewRequest(c.method, url+c.path, strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := errorMessage(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || err != nil || !strings.Contains(msg, c.want) ||
			resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Allow") != c.allow {
			t.Errorf("%s %s: %d %q (%v), Allow %q; want %d JSON with %q, Allow %q", c.method, c.path, resp.StatusCode, msg, err, resp.Header.Get("Allow"), c.code, c.want, c.allow)
		}
	}
	// Outside the API, the mux's answers stay as they are.
	resp, _ := http.Get(url + "/nope")
	resp.Body.Close()
	if resp.StatusCode != 404 || !slices.Contains([]string{"text/plain; charset=utf-8"}, resp.Header.Get("Content-Type")) {
		t.Errorf("GET /nope: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
