package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// versionLDFlags is how make build links the version in: the flag, with the value
// scripts/version.sh prints for this tree.
func versionLDFlags(t *testing.T) (flags, version string) {
	t.Helper()
	out, err := exec.Command("../../scripts/version.sh").Output()
	if err != nil {
		t.Fatalf("scripts/version.sh: %v", err)
	}
	version = strings.TrimSpace(string(out))
	return "-X xspan/internal/torchrt.buildVersion=" + version, version
}

// make build links scripts/version.sh's version into the binary with -ldflags.
func TestMakeBuildLinksTheVersion(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	flags, v := versionLDFlags(t)
	if v == "" {
		t.Fatal("scripts/version.sh printed nothing in a clone")
	}
	out, err := exec.Command("make", "-n", "-C", "../..", "build").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n build: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "build -ldflags '"+flags+"' -o xspan ./cmd/xspan") {
		t.Errorf("make build does not link the version %q:\n%s", v, out)
	}
}

// scripts/version.sh: git describe in a clone (a tag, commits since, -dirty), the
// VERSION file in a git archive (export-subst fills it), nothing elsewhere.
func TestVersionScript(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git")
	}
	repo := t.TempDir()
	run := func(dir string, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t",
			"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	copyFile := func(from, to string) {
		t.Helper()
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(to), 0o755)
		if err := os.WriteFile(to, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"scripts/version.sh", "VERSION", ".gitattributes"} {
		copyFile(filepath.Join("../..", f), filepath.Join(repo, f))
	}
	script := filepath.Join(repo, "scripts", "version.sh")
	// Outside git, the VERSION file as committed (not filled in): nothing.
	if v := run(repo, script); v != "" {
		t.Errorf("no git, VERSION not filled in: %q, want nothing", v)
	}
	run(repo, git, "init", "-q")
	run(repo, git, "add", ".")
	run(repo, git, "commit", "-q", "-m", "one")
	if v := run(repo, script); !regexp.MustCompile(`^[0-9a-f]{7,}$`).MatchString(v) {
		t.Errorf("a clone without tags: %q, want the short commit", v)
	}
	run(repo, git, "tag", "v1.2.0")
	if v := run(repo, script); v != "v1.2.0" {
		t.Errorf("at a tag: %q", v)
	}
	os.WriteFile(filepath.Join(repo, "VERSION"), []byte("changed\n"), 0o644)
	if v := run(repo, script); v != "v1.2.0-dirty" {
		t.Errorf("with a local change: %q", v)
	}
	run(repo, git, "commit", "-q", "-am", "two")
	if v := run(repo, script); !regexp.MustCompile(`^v1\.2\.0-1-g[0-9a-f]{7,}$`).MatchString(v) {
		t.Errorf("a commit after the tag: %q", v)
	}
	// An archive (GitHub's "Download ZIP" is one): no .git, VERSION filled in by git.
	run(repo, git, "checkout", "-q", "v1.2.0")
	tar := filepath.Join(t.TempDir(), "src.tar")
	run(repo, git, "archive", "-o", tar, "HEAD")
	src := t.TempDir()
	run(src, "tar", "-xf", tar)
	if v := run(src, filepath.Join(src, "scripts", "version.sh")); v != "v1.2.0" {
		b, _ := os.ReadFile(filepath.Join(src, "VERSION"))
		t.Errorf("from git archive: %q (VERSION holds %q)", v, b)
	}
}
