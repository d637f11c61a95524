package serve

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"xspan/generate"
	"xspan/generate/gentest"
	"xspan/tokenize"
)

// openAIClient is the official client, pointed at a test server; any key will do.
func openAIClient(url string) openai.Client {
	return openai.NewClient(option.WithBaseURL(url+"/v1/"), option.WithAPIKey("sk-anything"), option.WithMaxRetries(0))
}

func completionParamsFor(prompt string, maxTokens int64) openai.CompletionNewParams {
	return openai.CompletionNewParams{
		Model:       "xspan-test",
		Prompt:      openai.CompletionNewParamsPromptUnion{OfString: openai.String(prompt)},
		MaxTokens:   openai.Int(maxTokens),
		Temperature: openai.Float(0.8),
		TopP:        openai.Float(0.9),
		Seed:        openai.Int(5),
	}
}

func TestOpenAICompletions(t *testing.T) {
	url, srv := startServer(t, &gentest.Model{}, func(c *Config) { c.ModelName = "xspan-test" })
	client := openAIClient(url)
	ctx := context.Background()

	c, err := client.Completions.New(ctx, completionParamsFor("Hello", 40))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := gentest.Generate(t, gentest.NewStepper(256, 2, 64, true), "Hello", generate.Options{MaxNewTokens: 40, Sampler: generate.SamplerConfig{Temperature: 0.8, TopP: 0.9, Seed: 5}}, nil)
	if len(c.Choices) != 1 || c.Choices[0].Text != want.Text || c.Choices[0].FinishReason != "length" || c.Model != "xspan-test" ||
		!strings.HasPrefix(c.ID, "cmpl-") || c.Object != "text_completion" || c.Created == 0 {
		t.Fatalf("completion %s; want the text %q", c.RawJSON(), want.Text)
	}
	if u := c.Usage; u.PromptTokens != 5 || u.CompletionTokens != 40 || u.TotalTokens != 45 {
		t.Errorf("usage %+v", u)
	}
	if c.Choices[0].JSON.Logprobs.Raw() != "null" {
		t.Errorf("logprobs without asking: %s", c.Choices[0].JSON.Logprobs.Raw())
	}

	// A stop sequence from the middle of that text cuts it there.
	runes := []rune(want.Text)
	stop := string(runes[20:22])
	p := completionParamsFor("Hello", 40)
	p.Stop = openai.CompletionNewParamsStopUnion{OfStringArray: []string{"never", stop}}
	p.Logprobs = openai.Int(2)
	c, err = client.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	ch := c.Choices[0]
	if wantText := want.Text[:strings.Index(want.Text, stop)]; ch.Text != wantText || ch.FinishReason != "stop" {
		t.Errorf("stop %q: %q, %s; want %q, stop", stop, ch.Text, ch.FinishReason, wantText)
	}
	lp := ch.Logprobs
	n := int(c.Usage.CompletionTokens)
	if len(lp.Tokens) != n || len(lp.TokenLogprobs) != n || len(lp.TopLogprobs) != n || len(lp.TextOffset) != n || n == 0 {
		t.Fatalf("%d tokens, logprobs %s", n, lp.RawJSON())
	}
	// The tokens are the text's (one byte a token): the stop sequence's are left out of
	// the log-probabilities and of completion_tokens, as its text is.
	if got := tokensText(lp.Tokens); got != ch.Text {
		t.Errorf("stop %q: %d completion tokens %q (the text %q) for the text %q", stop, n, lp.Tokens, got, ch.Text)
	}
	// Streamed, the same: no chunk carries a token of the stop sequence.
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Completions.NewStreaming(ctx, p)
	var streamedText strings.Builder
	var streamedTokens []string
	var streamedUsage int64
	for stream.Next() {
		c := stream.Current()
		if c.Usage.TotalTokens > 0 {
			streamedUsage = c.Usage.CompletionTokens
		}
		for _, ch := range c.Choices {
			streamedText.WriteString(ch.Text)
			streamedTokens = append(streamedTokens, ch.Logprobs.Tokens...)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if streamedText.String() != ch.Text || strings.Join(streamedTokens, "|") != strings.Join(lp.Tokens, "|") || streamedUsage != int64(n) {
		t.Errorf("streamed with stop %q: text %q, tokens %q, %d completion tokens; want %q, %q and %d", stop, streamedText.String(), streamedTokens, streamedUsage, ch.Text, lp.Tokens, n)
	}
	for i := range n {
		top := lp.TopLogprobs[i]
		if v, ok := top[lp.Tokens[i]]; !ok || v != lp.TokenLogprobs[i] || len(top) < 2 || len(top) > 3 || lp.TokenLogprobs[i] > 0 {
			t.Errorf("token %d %q: logprob %g, top %v", i, lp.Tokens[i], lp.TokenLogprobs[i], top)
		}
		if i > 0 && lp.TextOffset[i] != lp.TextOffset[i-1]+1 { // one byte a token
			t.Errorf("text offsets %v", lp.TextOffset)
		}
	}

	// The models list names the served model.
	models, err := client.Models.List(ctx)
	if err != nil || len(models.Data) != 1 || models.Data[0].ID != "xspan-test" || models.Data[0].OwnedBy != "xspan" {
		t.Fatalf("models: %+v %v", models, err)
	}
	if m, err := client.Models.Get(ctx, "xspan-test"); err != nil || m.ID != "xspan-test" {
		t.Errorf("model: %+v %v", m, err)
	}
	_, err = client.Models.Get(ctx, "gpt-4")
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" {
		t.Errorf("unknown model: %v", err)
	}
	if cn := srv.Counters(); cn.Completed != 3 {
		t.Errorf("counters %+v", cn)
	}
}

func TestOpenAIStream(t *testing.T) {
	url, _ := startServer(t, &gentest.Model{}, func(c *Config) { c.ModelName = "xspan-test" })
	client := openAIClient(url)
	p := completionParamsFor("Hello", 40)
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Completions.NewStreaming(context.Background(), p)
	var text strings.Builder
	var finish string
	var usage *openai.CompletionUsage
	chunks := 0
	for stream.Next() {
		c := stream.Current()
		chunks++
		if c.JSON.Usage.Valid() && c.Usage.TotalTokens > 0 {
			usage = &c.Usage
			continue
		}
		if len(c.Choices) != 1 || c.ID == "" || c.Model != "xspan-test" {
			t.Fatalf("chunk %s", c.RawJSON())
		}
		text.WriteString(c.Choices[0].Text)
		if r := c.Choices[0].FinishReason; r != "" {
			finish = string(r)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	want, _ := gentest.Generate(t, gentest.NewStepper(256, 2, 64, true), "Hello", generate.Options{MaxNewTokens: 40, Sampler: generate.SamplerConfig{Temperature: 0.8, TopP: 0.9, Seed: 5}}, nil)
	if text.String() != want.Text || finish != "length" || chunks < 10 {
		t.Errorf("streamed %q in %d chunks, finish %q; want %q, length", text.String(), chunks, finish, want.Text)
	}
	if usage == nil || usage.PromptTokens != 5 || usage.CompletionTokens != 40 {
		t.Errorf("usage %+v", usage)
	}

	// On the wire: data-only events, ending with [DONE].
	resp, err := http.Post(url+"/v1/completions", "application/json", strings.NewReader(`{"model":"x","prompt":"Hi","max_tokens":3,"stream":true,"stop":"\u0000"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" || !strings.HasPrefix(string(b), "data: {") ||
		!strings.HasSuffix(string(b), "\n\ndata: [DONE]\n\n") || strings.Contains(string(b), "event:") {
		t.Errorf("stream on the wire:\n%s", b)
	}
}

func TestOpenAIBadRequests(t *testing.T) {
	url, _ := startServer(t, &gentest.Model{}, func(c *Config) { c.MaxNewTokens = 100 })
	client := openAIClient(url)
	for _, c := range []struct {
		change      func(p *openai.CompletionNewParams)
		code        int
		param, want string
	}{
		{func(p *openai.CompletionNewParams) { p.MaxTokens = openai.Int(101) }, 400, "max_tokens", "max_tokens = 101: must lie in [1, 100]"},
		{func(p *openai.CompletionNewParams) { p.N = openai.Int(2) }, 400, "n", "one completion a request"},
		{func(p *openai.CompletionNewParams) { p.Temperature = openai.Float(-1) }, 400, "temperature", "temperature = -1"},
		{func(p *openai.CompletionNewParams) { p.Logprobs = openai.Int(6) }, 400, "logprobs", "must lie in [0, 5]"},
		{func(p *openai.CompletionNewParams) { p.Echo = openai.Bool(true) }, 400, "echo", "not supported"},
		{func(p *openai.CompletionNewParams) {
			p.Prompt = openai.CompletionNewParamsPromptUnion{OfArrayOfStrings: []string{"a", "b"}}
		}, 400, "prompt", "2 prompts"},
		{func(p *openai.CompletionNewParams) {
			p.Prompt = openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: []int64{1, 2}}
		}, 400, "prompt", "token arrays are not supported"},
		{func(p *openai.CompletionNewParams) {
			p.Stop = openai.CompletionNewParamsStopUnion{OfStringArray: []string{"a", "b", "c", "d", "e"}}
		}, 400, "stop", "at most 4"},
	} {
		p := completionParamsFor("Hi", 5)
		c.change(&p)
		_, err := client.Completions.New(context.Background(), p)
		var e *openai.Error
		if !errors.As(err, &e) || e.StatusCode != c.code || e.Param != c.param || e.Type != "invalid_request_error" || !strings.Contains(e.Message, c.want) {
			t.Errorf("want %d %s %q; got %v", c.code, c.param, c.want, err)
		}
	}
}

// A client that cancels its stream stops the generation.
func TestOpenAICancelledStream(t *testing.T) {
	m := &gentest.Model{Delay: 2 * time.Millisecond}
	url, srv := startServer(t, m, func(c *Config) { c.MaxNewTokens = 100000 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := openAIClient(url)
	stream := client.Completions.NewStreaming(ctx, completionParamsFor("x", 100000))
	got := 0
	for got < 5 && stream.Next() {
		got++
	}
	cancel()
	stream.Close()
	if got != 5 {
		t.Fatalf("%d chunks before cancelling: %v", got, stream.Err())
	}
	deadline := time.Now().Add(5 * time.Second)
	for c := srv.Counters(); c.Cancelled == 0 || c.Running != 0; c = srv.Counters() {
		if time.Now().After(deadline) {
			t.Fatalf("generation not stopped after the client cancelled: %+v", c)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if feeds := m.Feeds.Load(); feeds > 2000 {
		t.Errorf("%d feeds: the generation ran on", feeds)
	}
}

// tokensText is the text of the API's token strings (a byte that is no character by
// itself written "bytes:\xNN"), as a TextStream writes it.
func tokensText(tokens []string) string {
	var raw []byte
	for _, tok := range tokens {
		if hex, ok := strings.CutPrefix(tok, "bytes:"); ok {
			for _, h := range strings.Split(hex, `\x`)[1:] {
				b, _ := strconv.ParseUint(h, 16, 8)
				raw = append(raw, byte(b))
			}
			continue
		}
		raw = append(raw, tok...)
	}
	ts := generate.NewTextStream(tokenize.Byte{})
	return ts.Write(raw) + ts.Flush()
}
