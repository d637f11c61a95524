package main

import (
	"strings"
	"testing"
)

// Out-of-range values are usage errors (exit 2, a message naming the value), caught
// before any work: the folders named need not exist.
func TestCLIBoundsAreUsageErrors(t *testing.T) {
	t.Parallel()
	train := []string{"train", "--data", "no-such-data", "--out", "no-such-run"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{append(train, "--threads", "100000"), "--threads 100000"},
		{append(train, "--threads", "-3"), "--threads -3"},
		{append(train, "--ckpt-every", "-1"), "ckpt_every = -1"},
		{append(train, "--eval-every", "-1"), "eval_every = -1"},
		{append(train, "--set", "seed=-1"), "seed = -1"},
		{append(train, "--set", "dropout=2"), "dropout = 2"},
		{append(train, "--set", "dropout=NaN"), "not a finite number"},
		{append(train, "--lr", "Inf"), "not a finite number"},
		{append(train, "--keep", "-1"), "--keep -1"},
		{append(train, "--log-every", "0"), "--log-every 0"},
		{[]string{"train", "--print-config", "--set", "alpha=-inf"}, "not a finite number"},
		{[]string{"bench", "train", "--threads", "100000"}, "--threads 100000"},
		{[]string{"eval", "--ckpt", "no-such-run", "--max-blocks", "-1"}, "--max-blocks -1"},
		{[]string{"eval", "--ckpt", "no-such-run", "--threads", "-3"}, "--threads -3"},
		{[]string{"inspect", "no-such-data", "--sample", "-5"}, "--sample -5"},
		{[]string{"report", "no-such-run", "--sample", "-5"}, "--sample -5"},
		{[]string{"generate", "--preset", "tiny", "--random", "--threads", "100000", "--prompt", "x"}, "--threads 100000"},
		{[]string{"serve", "--preset", "tiny", "--random", "--threads", "-1"}, "--threads -1"},
		{[]string{"bench", "copy", "--threads", "100000"}, "--threads 100000"},
		{[]string{"bench", "gen", "--tokens", "0"}, "--tokens 0"},
	} {
		code, stdout, stderr := run(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) || stdout != "" {
			t.Errorf("xspan %s: exit %d, %q; want exit 2 with %q", strings.Join(c.args, " "), code, stderr, c.want)
		}
	}
}
