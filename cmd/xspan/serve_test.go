package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
	"xspan/internal/torchrt"
)

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestCLIServe(t *testing.T) {
	addr := freeAddr(t)
	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, o, e := run(t, "serve", "--preset", "tiny", "--random", "--device", "auto", "--threads", "1", "--addr", addr, "--max-new-tokens", "100", "--allow-host", "gen.example")
		done <- result{code, o, e}
	}()
	url := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case r := <-done:
			t.Fatalf("serve exited early: %d %s", r.code, r.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not start listening")
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Post(url+"/v1/generate", "application/json", strings.NewReader(`{"prompt":"Hi","max_new_tokens":20,"seed":3}`))
	if err != nil {
		t.Fatal(err)
	}
	var ans struct {
		Text      string
		NewTokens int `json:"new_tokens"`
		Live      []int
	}
	err = json.NewDecoder(resp.Body).Decode(&ans)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || ans.NewTokens != 20 || len(ans.Live) != 2 {
		t.Errorf("generate: %d %+v %v", resp.StatusCode, ans, err)
	}
	resp, _ = http.Post(url+"/v1/generate", "application/json", strings.NewReader(`{"prompt":"Hi","max_new_tokens":101}`))
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(body), "[1, 100]") {
		t.Errorf("over the limit: %d %s", resp.StatusCode, body)
	}
	// The Host must name the server, unless --allow-host names it.
	for host, want := range map[string]int{"evil.example": 403, "gen.example": 200} {
		req, _ := http.NewRequest("GET", url+"/healthz", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %s: %d, want %d", host, resp.StatusCode, want)
		}
	}
	resp, _ = http.Get(url + "/v1/models")
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"id":"xspan-tiny-random"`) {
		t.Errorf("/v1/models: %s", body)
	}
	resp, _ = http.Get(url + "/v1/model")
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"preset":"tiny"`) || !strings.Contains(string(body), `"size":256`) {
		t.Errorf("/v1/model: %s", body)
	}
	// The device is the device, not the CLI's sentence about how it was chosen.
	auto, _, _ := torchrt.ParseDevice("auto")
	if want := `"device":"` + torchrt.DeviceName(auto) + `"`; !strings.Contains(string(body), want) {
		t.Errorf("/v1/model lacks %s: %s", want, body)
	}
	syscall.Kill(syscall.Getpid(), syscall.SIGTERM)
	select {
	case r := <-done:
		if r.code != 0 || !strings.Contains(r.stderr, "shut down: 1 completed") || !strings.Contains(r.stderr, "listening on http://"+addr) {
			t.Errorf("serve: exit %d:\n%s", r.code, r.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
}

func TestCLIServeBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"serve"}, "give --ckpt"},
		{[]string{"serve", "--preset", "tiny", "--random", "--max-concurrent", "0"}, "--max-concurrent 0"},
		{[]string{"serve", "--preset", "tiny", "--random", "--max-queue", "-1"}, "--max-queue -1"},
		{[]string{"serve", "--preset", "tiny", "--random", "--default-new-tokens", "500", "--max-new-tokens", "100"}, "--default-new-tokens 500"},
		{[]string{"serve", "--preset", "tiny", "--random", "--unk", "skip"}, "--unk"},
		{[]string{"serve", "--preset", "tiny", "--random", "--max-conns", "18"}, "--max-conns 18: must exceed"},
		{[]string{"serve", "--preset", "tiny", "--random", "--max-prompt-tokens", "0"}, "--max-prompt-tokens 0"},
		{[]string{"serve", "--preset", "tiny", "--random", "--read-timeout", "0s"}, "--read-timeout"},
		{[]string{"serve", "--preset", "tiny", "--random", "--allow-origin", "ftp://x"}, "--allow-origin \"ftp://x\": want an origin"},
		{[]string{"serve", "--preset", "tiny", "--random", "--grace", "-1s"}, "--grace -1s"},
	} {
		code, _, stderr := run(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("xspan %s: exit %d, %q; want 2 with %q", strings.Join(c.args, " "), code, stderr, c.want)
		}
	}
}
