package train

import (
	"fmt"
	"math"
)

// Learning-rate schedule kinds, as the config's "schedule" field names them.
const (
	ScheduleConstant = "constant"
	ScheduleCosine   = "cosine"
	ScheduleStep     = "step"
)

// Schedule gives the learning rate of each step: a linear warm-up from Peak/Warmup to Peak
// over the first Warmup steps, then
//
//   - constant: Peak;
//   - cosine: from Peak down to Final along half a cosine, reaching Final at step Steps;
//   - step: Peak until step DecayAt, Final from then on (the enwik8-12l recipe's drop to
//     7e-5 for its last 10k steps).
//
// Steps are counted from 0: LR(0) is the rate of the first update. (The reference's
// LambdaLR gives its first update rate 0; starting at Peak/Warmup wastes no step.)
type Schedule struct {
	Kind    string
	Peak    float64
	Warmup  int64
	Steps   int64   // total steps, for cosine
	DecayAt int64   // first step at Final, for step
	Final   float64 // the rate cosine ends at, or step drops to
}

// Validate checks the schedule's fields.
func (s Schedule) Validate() error {
	switch s.Kind {
	case ScheduleConstant, "":
	case ScheduleCosine:
		if s.Steps <= s.Warmup {
			return fmt.Errorf("cosine schedule: steps (%d) must exceed warm-up (%d)", s.Steps, s.Warmup)
		}
	case ScheduleStep:
		if s.DecayAt <= 0 {
			return fmt.Errorf("step schedule: decay_at %d: want the step (> 0) from which decay_lr applies", s.DecayAt)
		}
	default:
		return fmt.Errorf("schedule %q: want %s, %s or %s", s.Kind, ScheduleConstant, ScheduleCosine, ScheduleStep)
	}
	if !(s.Peak > 0) || math.IsInf(s.Peak, 0) {
		return fmt.Errorf("learning rate %g: want > 0", s.Peak)
	}
	if s.Warmup < 0 {
		return fmt.Errorf("warm-up %d: want ≥ 0", s.Warmup)
	}
	if !(s.Final >= 0) || math.IsInf(s.Final, 0) {
		return fmt.Errorf("final learning rate %g: want ≥ 0", s.Final)
	}
	return nil
}

// LR returns the learning rate of step (0-based).
func (s Schedule) LR(step int64) float64 {
	if step < s.Warmup {
		return s.Peak * float64(step+1) / float64(s.Warmup)
	}
	switch s.Kind {
	case ScheduleCosine:
		span := s.Steps - s.Warmup
		p := float64(step-s.Warmup) / float64(span)
		if p > 1 {
			p = 1
		}
		return s.Final + (s.Peak-s.Final)*0.5*(1+math.Cos(math.Pi*p))
	case ScheduleStep:
		if step >= s.DecayAt {
			return s.Final
		}
	}
	return s.Peak
}
