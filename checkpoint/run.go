package checkpoint

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"xspan/lm"
)

// The run folder's layout.
const (
	// ConfigName is the resolved config a run writes at its start.
	ConfigName = "config.json"
	// MetricsName is the run's log of metrics, one Row a line.
	MetricsName = "metrics.jsonl"
	// Dir is the run folder's sub-folder of checkpoints.
	Dir = "checkpoints"
	// BestName is the run folder's pointer to its best checkpoint.
	BestName = "best"
)

// StepDirName is the folder name of the checkpoint after step updates.
func StepDirName(step int64) string { return fmt.Sprintf("step-%09d", step) }

// StepDir is the folder of run's checkpoint after step updates.
func StepDir(run string, step int64) string {
	return filepath.Join(run, Dir, StepDirName(step))
}

var stepDirRE = regexp.MustCompile(`^step-([0-9]+)$`)

// WriteRunConfig writes the config a run starts with to RUN/config.json.
func WriteRunConfig(run string, cfg lm.Config) error {
	js, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(run, ConfigName), append(js, '\n'))
}

// ReadRunConfig reads the config a run folder was started with (RUN/config.json).
func ReadRunConfig(run string) (lm.Config, error) {
	path := filepath.Join(run, ConfigName)
	data, err := os.ReadFile(path)
	if err != nil {
		return lm.Config{}, err
	}
	c, err := lm.ParseConfig(data)
	if err != nil {
		return lm.Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Steps returns the steps of the complete checkpoints in RUN/checkpoints, ascending.
func Steps(run string) ([]int64, error) {
	ents, err := os.ReadDir(filepath.Join(run, Dir))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var steps []int64
	for _, e := range ents {
		m := stepDirRE.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(run, Dir, e.Name(), HeaderName)); err != nil {
			continue
		}
		n, err := strconv.ParseInt(m[1], 10, 64)
		if err == nil {
			steps = append(steps, n)
		}
	}
	slices.Sort(steps)
	return steps, nil
}

// Latest returns the folder of the run's latest complete checkpoint, or "" if it has none.
func Latest(run string) (string, error) {
	steps, err := Steps(run)
	if err != nil || len(steps) == 0 {
		return "", err
	}
	return StepDir(run, steps[len(steps)-1]), nil
}

// Best returns the folder that RUN/best names, or "" if the run has no best yet.
func Best(run string) (string, error) {
	p := filepath.Join(run, BestName)
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	return readPointer(p)
}

// SetBest points RUN/best at the checkpoint of step.
func SetBest(run string, step int64) error {
	rel := filepath.Join(Dir, StepDirName(step))
	return WriteFileAtomic(filepath.Join(run, BestName), []byte(rel+"\n"))
}

// maxPointerSize bounds a pointer file: a larger file is something else.
const maxPointerSize = 4096

// readPointer reads a pointer file: one line naming a folder relative to the file's
// folder (or absolute).
func readPointer(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return "", fmt.Errorf("%s: empty pointer file", path)
	}
	target := strings.TrimSpace(sc.Text())
	if target == "" {
		return "", fmt.Errorf("%s: empty pointer file", path)
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(path), target)
	}
	return target, nil
}

// Suffixes of the folders that are not (or no longer) checkpoints: one being written, one
// being removed, and one being replaced by a checkpoint of the same step.
const (
	tmpSuffix = ".tmp"
	delSuffix = ".del"
	oldSuffix = ".old"
)

// Clean removes what a run killed while writing or pruning checkpoints left in
// RUN/checkpoints: folders being written (.tmp) or removed (.del). A replaced checkpoint
// (.old) whose replacement never got its name is put back; otherwise it goes too.
func Clean(run string) error {
	dir := filepath.Join(run, Dir)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		path := filepath.Join(dir, name)
		switch {
		case strings.HasSuffix(name, tmpSuffix), strings.HasSuffix(name, delSuffix):
			if err := os.RemoveAll(path); err != nil {
				return err
			}
		case strings.HasSuffix(name, oldSuffix):
			final := strings.TrimSuffix(path, oldSuffix)
			if _, err := os.Stat(final); errors.Is(err, fs.ErrNotExist) {
				if err := os.Rename(path, final); err != nil {
					return err
				}
				continue
			}
			if err := os.RemoveAll(path); err != nil {
				return err
			}
		}
	}
	return nil
}

// Prune removes all but the newest keep checkpoints of run, sparing the best one, after
// Clean (keep 0: only Clean). Each checkpoint is first renamed out of the way (.del),
// so that one killed half-way is never taken for a checkpoint.
func Prune(run string, keep int) error {
	if err := Clean(run); err != nil {
		return err
	}
	if keep <= 0 {
		return nil
	}
	steps, err := Steps(run)
	if err != nil {
		return err
	}
	best, _ := Best(run)
	for i := 0; i < len(steps)-keep; i++ {
		p := StepDir(run, steps[i])
		if best != "" && filepath.Clean(best) == filepath.Clean(p) {
			continue
		}
		if err := removeDir(p); err != nil {
			return err
		}
	}
	return nil
}

// removeDir removes the folder path by renaming it to path.del first.
func removeDir(path string) error {
	del := path + delSuffix
	if err := os.RemoveAll(del); err != nil {
		return err
	}
	if err := os.Rename(path, del); err != nil {
		return err
	}
	syncDir(filepath.Dir(path))
	return removeAll(del)
}

// removeAll is os.RemoveAll; tests replace it to stop a removal half-way, as a kill does.
var removeAll = os.RemoveAll

// Resolve turns what a user names with --ckpt into a checkpoint folder: a checkpoint
// folder itself, a pointer file such as RUN/best, or a run folder (its latest
// checkpoint). A path that does not exist gives an error that wraps fs.ErrNotExist.
func Resolve(pathOrRun string) (string, error) {
	st, err := os.Stat(pathOrRun)
	if err != nil {
		return "", fmt.Errorf("checkpoint %s: %w", pathOrRun, errors.Unwrap(err))
	}
	if !st.IsDir() {
		notPointer := fmt.Errorf("%s is a file, but not a pointer file like RUN/best: --ckpt takes a checkpoint folder, a run folder or a pointer file", pathOrRun)
		if st.Size() > maxPointerSize {
			return "", notPointer
		}
		target, err := readPointer(pathOrRun)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(filepath.Join(target, HeaderName)); err != nil {
			if filepath.Base(pathOrRun) != BestName && filepath.Base(filepath.Dir(target)) != Dir {
				return "", notPointer // its first line names no checkpoint folder: some other file
			}
			return "", fmt.Errorf("%s names %s, which is not a checkpoint (was it pruned?)", pathOrRun, target)
		}
		return target, nil
	}
	if _, err := os.Stat(filepath.Join(pathOrRun, HeaderName)); err == nil {
		return pathOrRun, nil
	}
	if _, err := os.Stat(filepath.Join(pathOrRun, Dir)); err == nil {
		latest, err := Latest(pathOrRun)
		if err != nil {
			return "", err
		}
		if latest == "" {
			return "", fmt.Errorf("run %s has no complete checkpoint yet", pathOrRun)
		}
		return latest, nil
	}
	return "", fmt.Errorf("%s: neither a checkpoint folder, a run folder nor a pointer file like RUN/best", pathOrRun)
}
