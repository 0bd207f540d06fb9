package abi

import (
	"fmt"
	"strconv"
	"strings"
)

// Release is an hv build's version: MAJOR.MINOR.PATCH, optionally -dev.
type Release struct {
	Major, Minor, Patch int
	Dev                 bool
}

// Interface is what a guest is built against: MAJOR.MINOR, and for a
// volatile interface the build id of the one hv build that serves it.
type Interface struct {
	Major, Minor int
	Dev          bool
	BuildID      string // only meaningful when Dev
}

// ParseRelease reads "1.2.3" or "1.3.0-dev".
func ParseRelease(s string) (Release, error) {
	var r Release
	body, dev := strings.CutSuffix(s, "-dev")
	r.Dev = dev
	parts := strings.Split(body, ".")
	if len(parts) != 3 {
		return r, fmt.Errorf("abi: release %q: want MAJOR.MINOR.PATCH[-dev]", s)
	}
	nums, err := atois(parts)
	if err != nil {
		return r, fmt.Errorf("abi: release %q: %w", s, err)
	}
	r.Major, r.Minor, r.Patch = nums[0], nums[1], nums[2]
	return r, nil
}

// ParseInterface reads "1.2", "1.3-dev" or "1.3-dev@BUILDID".
func ParseInterface(s string) (Interface, error) {
	var in Interface
	body, build, hasBuild := strings.Cut(s, "@")
	body, dev := strings.CutSuffix(body, "-dev")
	in.Dev = dev
	if hasBuild {
		if !dev {
			return in, fmt.Errorf("abi: interface %q: only a -dev interface names a build id", s)
		}
		if build == "" {
			return in, fmt.Errorf("abi: interface %q: empty build id after @", s)
		}
		in.BuildID = build
	}
	parts := strings.Split(body, ".")
	if len(parts) != 2 {
		return in, fmt.Errorf("abi: interface %q: want MAJOR.MINOR[-dev[@BUILDID]]", s)
	}
	nums, err := atois(parts)
	if err != nil {
		return in, fmt.Errorf("abi: interface %q: %w", s, err)
	}
	in.Major, in.Minor = nums[0], nums[1]
	return in, nil
}

func atois(parts []string) ([]int, error) {
	out := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 0xffff || (len(p) > 1 && p[0] == '0') {
			return nil, fmt.Errorf("%q is not a version number", p)
		}
		out[i] = n
	}
	return out, nil
}

func (r Release) String() string {
	s := fmt.Sprintf("%d.%d.%d", r.Major, r.Minor, r.Patch)
	if r.Dev {
		s += "-dev"
	}
	return s
}

// Extraversion is the part after MAJOR.MINOR, as Xen's xen_extraversion.
func (r Release) Extraversion() string {
	s := fmt.Sprintf(".%d", r.Patch)
	if r.Dev {
		s += "-dev"
	}
	return s
}

// Interface is the interface this release natively serves.
func (r Release) Interface() Interface {
	return Interface{Major: r.Major, Minor: r.Minor, Dev: r.Dev}
}

func (in Interface) String() string {
	s := fmt.Sprintf("%d.%d", in.Major, in.Minor)
	if in.Dev {
		s += "-dev"
		if in.BuildID != "" {
			s += "@" + in.BuildID
		}
	}
	return s
}

// Short is the interface without the build id, for messages and CPUID.
func (in Interface) Short() string {
	in.BuildID = ""
	return in.String()
}

// Word is the MAJOR<<16|MINOR encoding used in CPUID and entry registers.
func (in Interface) Word() uint32 { return uint32(in.Major)<<16 | uint32(in.Minor) }

// Cap is the capability string, as in Xen's "xen-3.0-x86_64".
func (in Interface) Cap() string {
	return fmt.Sprintf("xeno-%d.%d-%s", in.Major, in.Minor, Arch)
}

func (in Interface) less(o Interface) bool {
	if in.Major != o.Major {
		return in.Major < o.Major
	}
	return in.Minor < o.Minor
}

// Build describes one concrete hv build.
type Build struct {
	Release   Release
	BuildID   string
	Changeset string
}

// Current is the build this binary was stamped as.
func Current() Build {
	r, err := ParseRelease(release)
	if err != nil {
		// A bad -X stamp is a build-system bug; fail loudly at first use.
		panic(fmt.Sprintf("abi: bad stamped release: %v", err))
	}
	return Build{Release: r, BuildID: buildID, Changeset: changeset}
}
