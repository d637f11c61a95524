package checkpoint

import (
	"os"
	"path/filepath"
)

// Everything this package writes goes to a temporary name first and is renamed once
// synced, so that a reader (or a run killed half-way) never sees half a file or folder.

// writeFileSync writes data to path and syncs it to disk.
func writeFileSync(path string, data []byte) error {
	_, err := writeFileSum(path, data)
	return err
}

// WriteFileAtomic writes data to path through a temporary file beside it and a rename.
func WriteFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := writeFileSync(tmp, data); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// commitDir syncs the files of the finished temporary folder tmp and renames it to
// final, replacing a folder of that name (a checkpoint of the same step written before).
func commitDir(tmp, final string) error {
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	for _, e := range ents {
		f, err := os.Open(filepath.Join(tmp, e.Name()))
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	if _, err := os.Stat(final); err == nil {
		// Killed between the two renames, the old checkpoint waits under .old, and
		// Clean puts it back.
		old := final + oldSuffix
		os.RemoveAll(old)
		if err := os.Rename(final, old); err != nil {
			return err
		}
		if err := os.Rename(tmp, final); err != nil {
			os.Rename(old, final)
			return err
		}
		syncDir(filepath.Dir(final))
		return os.RemoveAll(old)
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	syncDir(filepath.Dir(final))
	return nil
}

// syncDir syncs a folder, so that the renames in it are on disk.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
