package refckpt

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadFixtures(t *testing.T) {
	for _, name := range []string{"post", "pre"} {
		t.Run(name, func(t *testing.T) {
			fx := readFixture(t, name)
			c, err := Read(filepath.Join("testdata", name+".pt"))
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(c.Keys) != fmt.Sprint(fx.CheckpointKeys) {
				t.Errorf("keys %v, want %v", c.Keys, fx.CheckpointKeys)
			}
			if c.Epoch != fx.Epoch || c.SchedulerEpoch != fx.SchedulerEpoch {
				t.Errorf("epoch %d, scheduler epoch %d; want %d, %d", c.Epoch, c.SchedulerEpoch, fx.Epoch, fx.SchedulerEpoch)
			}
			if len(c.Params) != len(fx.StateDict) {
				t.Fatalf("%d parameters, want %d", len(c.Params), len(fx.StateDict))
			}
			for i, want := range fx.StateDict {
				p := c.Params[i]
				if "module."+p.Name != want.Name || fmt.Sprint(p.Shape) != fmt.Sprint(want.Shape) || p.DType != want.DType {
					t.Errorf("parameter %d: %s %v %s, want %s %v %s", i, p.Name, p.Shape, p.DType, want.Name, want.Shape, want.DType)
					continue
				}
				var sum, abs float64
				for _, v := range p.Data {
					sum += float64(v)
					abs += math.Abs(float64(v))
				}
				if math.Abs(sum-want.Sum) > 1e-6*math.Max(1, want.AbsSum) || math.Abs(abs-want.AbsSum) > 1e-6*math.Max(1, want.AbsSum) {
					t.Errorf("%s: sum %g, |sum| %g; want %g, %g", p.Name, sum, abs, want.Sum, want.AbsSum)
				}
				for j, v := range want.First {
					if float64(p.Data[j]) != v {
						t.Errorf("%s[%d] = %g, want %g", p.Name, j, p.Data[j], v)
					}
				}
			}
			// The optimizer state stays in the tree.
			opt, ok := c.Root.Get("optimizer")
			if od, isDict := opt.(*Dict); !ok || !isDict {
				t.Errorf("optimizer entry: %v", kind(opt))
			} else if _, ok := od.Get("param_groups"); !ok {
				t.Errorf("optimizer without param_groups")
			}
			if !strings.HasPrefix(c.Params[0].Name, "in_emb") {
				t.Errorf("first parameter %s", c.Params[0].Name)
			}
		})
	}
}
