package refckpt

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// fixture is the JSON written beside each reference checkpoint (see testdata/README.md).
type fixture struct {
	Reference struct {
		Repository, Commit, Torch string
	} `json:"reference"`
	Flags          string         `json:"flags"`
	HParams        map[string]any `json:"hparams"`
	Epoch          int64          `json:"epoch"`
	SchedulerEpoch int64          `json:"scheduler_epoch"`
	CheckpointKeys []string       `json:"checkpoint_keys"`
	StateDict      []struct {
		Name   string    `json:"name"`
		Shape  []int64   `json:"shape"`
		DType  string    `json:"dtype"`
		Sum    float64   `json:"sum"`
		AbsSum float64   `json:"abs_sum"`
		First  []float64 `json:"first"`
	} `json:"state_dict"`
	Vocab  []string `json:"vocab"`
	Blocks []struct {
		Inputs    []int       `json:"inputs"`
		Targets   []int       `json:"targets"`
		LogP      []float64   `json:"logp"`
		CacheLen  []int       `json:"cache_len"`
		Spans     [][]float64 `json:"spans"`
		CacheAges [][]int     `json:"cache_ages"`
	} `json:"blocks"`
}

func readFixture(t testing.TB, name string) *fixture {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var f fixture
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return &f
}
