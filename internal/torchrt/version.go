package torchrt

import "runtime/debug"

// buildVersion is set by make build (-ldflags "-X xspan/internal/torchrt.buildVersion=…",
// from scripts/version.sh: git describe, or the VERSION file of a git archive).
var buildVersion string

// Version is xspan's version as the build recorded it, for `xspan version`, checkpoint
// headers and exports: the version make build linked in; else the module's version
// (go install of a tagged module, or the pseudo-version a build stamped from VCS); else
// "(devel)", with the VCS revision when the build stamped one.
func Version() string {
	bi, _ := debug.ReadBuildInfo()
	return version(buildVersion, bi)
}

func version(linked string, bi *debug.BuildInfo) string {
	switch {
	case linked != "":
		return linked
	case bi == nil:
		return "(devel)"
	case bi.Main.Version != "" && bi.Main.Version != "(devel)":
		return bi.Main.Version // since Go 1.24 a pseudo-version names the commit itself
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision":
			rev = s.Value[:min(12, len(s.Value))]
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "+dirty"
		}
	}
	if rev == "" {
		return "(devel)"
	}
	return "(devel) " + rev + dirty
}
