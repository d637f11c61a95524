package dataset

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// folder is a dataset folder being written: shards go into a hidden temporary folder
// beside out, and install checks the manifest by reading it back, writes it and renames
// the folder to out. Until then nothing looks like a dataset, so an error, a cancelled
// context or a crash leaves nothing behind that a reader would take for one.
//
// The running writer holds a flock on the temporary folder itself, which the kernel
// releases when the process ends however it ends; a later prep to the same out removes
// the temporary folders that nobody holds, which killed runs left.
type folder struct {
	out, tmp  string
	replace   bool // out exists and is replaced at install
	installed bool
	lock      *os.File
}

// newFolder starts writing a dataset folder at out. An existing out is an error unless
// force is set, and even then it is replaced only if it is an empty folder or holds a
// manifest.json.
func newFolder(out string, force bool) (*folder, error) {
	if out == "" {
		return nil, errors.New("no output folder")
	}
	removeAbandoned(out)
	replace, err := checkOut(out, force)
	if err != nil {
		return nil, err
	}
	tmp, lock, err := tempDirBeside(out)
	if err != nil {
		return nil, err
	}
	return &folder{out: out, tmp: tmp, replace: replace, lock: lock}, nil
}

// discard removes the temporary folder unless it was installed, and lets go of its lock;
// deferred by writers.
func (f *folder) discard() {
	if !f.installed {
		os.RemoveAll(f.tmp)
	}
	f.lock.Close()
}

// removeAbandoned removes the temporary folders beside out whose writer is gone: those
// on which nobody holds a lock (a folder being set up is locked before it takes its
// .tmp- name), and puts back a dataset that a killed install had moved aside.
func removeAbandoned(out string) {
	parent, base := filepath.Split(filepath.Clean(out))
	if parent == "" {
		parent = "."
	}
	ents, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "."+base+".tmp-") {
			continue
		}
		path := filepath.Join(parent, e.Name())
		d, err := os.Open(path)
		if err != nil {
			continue
		}
		if syscall.Flock(int(d.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			// A dataset being replaced waits under .old while the new one takes its
			// name: killed in between, the old one goes back.
			if _, err := os.Stat(out); strings.HasSuffix(path, ".old") && errors.Is(err, fs.ErrNotExist) {
				os.Rename(path, out)
			} else {
				os.RemoveAll(path)
			}
		}
		d.Close()
	}
}

// writeFile writes one file of the folder.
func (f *folder) writeFile(name string, data []byte) error {
	if err := os.WriteFile(filepath.Join(f.tmp, name), data, 0o644); err != nil {
		return fileError(filepath.Join(f.tmp, name), err)
	}
	return nil
}

// install writes m as the manifest, once it reads back, and renames the folder to out,
// replacing out if it exists.
func (f *folder) install(m *Manifest) error {
	data, err := m.Marshal()
	if err != nil {
		return err
	}
	if _, err := ParseManifest(data); err != nil {
		return fmt.Errorf("the manifest written would not read back: %w", err)
	}
	if err := f.writeFile(ManifestName, data); err != nil {
		return err
	}
	if !f.replace {
		if err := os.Rename(f.tmp, f.out); err != nil {
			return fileError(f.out, err)
		}
		f.installed = true
		return nil
	}
	old := f.tmp + ".old"
	if err := os.Rename(f.out, old); err != nil {
		return fileError(f.out, err)
	}
	if err := os.Rename(f.tmp, f.out); err != nil {
		os.Rename(old, f.out)
		return fileError(f.out, err)
	}
	f.installed = true
	return os.RemoveAll(old)
}

// checkOut reports whether out exists and may be replaced, or why it may not.
func checkOut(out string, force bool) (exists bool, err error) {
	st, err := os.Stat(out)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fileError(out, err)
	}
	if !force {
		return false, fmt.Errorf("%s: already exists (use --force to replace it)", out)
	}
	if !st.IsDir() {
		return false, fmt.Errorf("%s: exists and is not a folder; not replacing it", out)
	}
	ents, err := os.ReadDir(out)
	if err != nil {
		return false, fileError(out, err)
	}
	if len(ents) > 0 {
		if _, err := os.Stat(filepath.Join(out, ManifestName)); err != nil {
			return false, fmt.Errorf("%s: exists and is not a dataset folder (no %s); not replacing it", out, ManifestName)
		}
	}
	return true, nil
}

// tempDirBeside makes a hidden temporary folder next to out (creating out's parent), so
// that the finished dataset can be renamed into place, and returns it with the open
// folder that holds its lock. The folder is made under a .new- name and locked before it
// is renamed to its .tmp- name, so that removeAbandoned never sees it unlocked.
func tempDirBeside(out string) (string, *os.File, error) {
	parent, base := filepath.Split(filepath.Clean(out))
	if parent == "" {
		parent = "."
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", nil, fileError(parent, err)
	}
	nu, err := os.MkdirTemp(parent, "."+base+".new-")
	if err != nil {
		return "", nil, fileError(parent, err)
	}
	// MkdirTemp makes the folder 0700; the dataset it becomes is an ordinary folder (0777
	// less the umask), readable by whoever may read its parent.
	if err := os.Chmod(nu, 0o777&^umask()); err != nil {
		os.Remove(nu)
		return "", nil, fileError(nu, err)
	}
	lock, err := os.Open(nu)
	if err == nil {
		if err = syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			lock.Close()
		}
	}
	if err != nil {
		os.Remove(nu)
		return "", nil, fileError(nu, err)
	}
	tmp := filepath.Join(parent, "."+base+".tmp-"+strings.TrimPrefix(filepath.Base(nu), "."+base+".new-"))
	if err := os.Rename(nu, tmp); err != nil {
		lock.Close()
		os.Remove(nu)
		return "", nil, fileError(tmp, err)
	}
	return tmp, lock, nil
}

// umask returns the process's file mode creation mask (reading it means setting it: set
// it back at once).
func umask() os.FileMode {
	m := syscall.Umask(0)
	syscall.Umask(m)
	return os.FileMode(m)
}
