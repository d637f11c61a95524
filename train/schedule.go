package train

import (
	"math"

	"xspan/lm"
)

// Schedule gives the learning rate of each step: a linear warm-up from Peak/Warmup to Peak
// over the first Warmup steps, then
//
//   - constant: Peak;
//   - cosine: from Peak down to Final along half a cosine, reaching Final at step Steps;
//   - step: Peak until step DecayAt, Final from then on (the enwik8-12l recipe's drop to
//     7e-5 for its last 10k steps).
//
// Steps are counted from 0: LR(0) is the rate of the first update, Peak/Warmup. (So is
// the reference's: its LambdaLR scheduler steps once before the first optimizer step.)
// The config's Validate checks the kinds and their settings (lm.TrainConfig.Validate).
type Schedule struct {
	Kind    string // lm.ScheduleConstant (or ""), lm.ScheduleCosine or lm.ScheduleStep
	Peak    float64
	Warmup  int64
	Steps   int64   // total steps, for cosine
	DecayAt int64   // first step at Final, for step
	Final   float64 // the rate cosine ends at, or step drops to
}

// ScheduleOf is the schedule that a training config asks for.
func ScheduleOf(c lm.TrainConfig) Schedule {
	return Schedule{Kind: c.Schedule, Peak: c.LR, Warmup: int64(c.Warmup), Steps: int64(c.Steps), DecayAt: int64(c.DecayAt), Final: c.DecayLR}
}

// LR returns the learning rate of step (0-based).
func (s Schedule) LR(step int64) float64 {
	if step < s.Warmup {
		return s.Peak * float64(step+1) / float64(s.Warmup)
	}
	switch s.Kind {
	case lm.ScheduleCosine:
		span := s.Steps - s.Warmup
		p := float64(step-s.Warmup) / float64(span)
		if p > 1 {
			p = 1
		}
		return s.Final + (s.Peak-s.Final)*0.5*(1+math.Cos(math.Pi*p))
	case lm.ScheduleStep:
		if step >= s.DecayAt {
			return s.Final
		}
	}
	return s.Peak
}
