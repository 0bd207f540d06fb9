package abi

import (
	"fmt"
	"strings"
)

// features says what each interface gives the guest. Entries for stable
// interfaces are frozen: once a MAJOR.MINOR has shipped as a point release,
// its line here must never change. The newest line may be volatile while
// only -dev releases carry it.
var features = map[[2]int][]Feature{
	{1, 0}: {FeatCPUID, FeatConsole},
	{1, 1}: {FeatCPUID, FeatConsole, FeatInfo},
	{1, 2}: {FeatCPUID, FeatConsole, FeatInfo, FeatShutdown, FeatBootTimer},
	{1, 3}: {FeatCPUID, FeatConsole, FeatInfo, FeatShutdown, FeatBootTimer, FeatInfoUptime},
}

// compat lists, for each hv interface line, the older stable interfaces it
// still serves in compat mode. Across majors only what is listed here runs.
var compat = map[[2]int][][2]int{
	{1, 0}: nil,
	{1, 1}: {{1, 0}},
	{1, 2}: {{1, 1}, {1, 0}},
	{1, 3}: {{1, 2}, {1, 1}}, // 1.0 guests are dropped in 1.3
}

// Known reports whether the interface table has an entry for in.
func Known(in Interface) bool {
	_, ok := features[[2]int{in.Major, in.Minor}]
	return ok
}

// Features returns what the interface gives the guest, or nil if unknown.
func Features(in Interface) []Feature {
	return features[[2]int{in.Major, in.Minor}]
}

// Has reports whether interface in offers feature f.
func Has(in Interface, f Feature) bool {
	for _, g := range Features(in) {
		if g == f {
			return true
		}
	}
	return false
}

// Served lists the interfaces this build serves, native first, then the
// compat ones newest first.
func (b Build) Served() []Interface {
	native := b.Release.Interface()
	native.BuildID = ""
	out := []Interface{native}
	for _, c := range compat[[2]int{native.Major, native.Minor}] {
		out = append(out, Interface{Major: c[0], Minor: c[1]})
	}
	return out
}

// Caps is the capability string: "xeno-1.2-x86_64 xeno-1.1-x86_64 ...".
func (b Build) Caps() string {
	var caps []string
	for _, in := range b.Served() {
		caps = append(caps, in.Cap())
	}
	return strings.Join(caps, " ")
}

// Verdict is the outcome of an admission check.
type Verdict int

const (
	Refuse Verdict = iota
	Run            // native: the guest's interface is the hv's own
	Compat         // an older stable interface from the compat table
)

func (v Verdict) String() string {
	switch v {
	case Run:
		return "run"
	case Compat:
		return "compat"
	}
	return "refuse"
}

// Decision is the answer to "may this guest run on this hv, and as what".
type Decision struct {
	Verdict  Verdict
	Admitted Interface // what the hv presents; zero when refused
	Rule     string    // the short name of the rule that decided
	Reason   string    // one line naming the guest interface, the hv release and the rule
}

// Rule names, stable so that tests and docs can refer to them.
const (
	RuleStableSame    = "stable-same-line"
	RuleDevSameBuild  = "dev-identical-build"
	RuleDevOtherBuild = "dev-other-build"
	RuleDevNoBuild    = "dev-without-build-id"
	RuleCompatTable   = "compat-table"
	RuleNewer         = "newer-than-hv"
	RuleNotInTable    = "not-in-compat-table"
	RuleUnknown       = "unknown-interface"
	RuleNotStable     = "interface-not-yet-stable"
)

// Admit decides whether a guest built for interface g may run on build b.
// It is the whole policy of docs/versions.md; the toolstack calls it
// before creating a domain, the hv calls it again on start, and the guest
// init applies the same rule from its side.
func Admit(b Build, g Interface) Decision {
	hv := b.Release.Interface()
	d := Decision{}
	refuse := func(rule, why string) Decision {
		d.Verdict, d.Rule = Refuse, rule
		d.Reason = fmt.Sprintf("guest interface %s refused by hv %s (rule %s): %s", g.Short(), b.Release, rule, why)
		return d
	}
	admit := func(v Verdict, as Interface, rule, why string) Decision {
		d.Verdict, d.Admitted, d.Rule = v, as, rule
		d.Reason = fmt.Sprintf("guest interface %s admitted by hv %s as %s %s (rule %s): %s", g.Short(), b.Release, as.Short(), v, rule, why)
		return d
	}
	if !Known(g) {
		return refuse(RuleUnknown, fmt.Sprintf("no interface %d.%d exists in this hv's table", g.Major, g.Minor))
	}
	if g.Dev {
		if g.Major != hv.Major || g.Minor != hv.Minor || !hv.Dev {
			if g.less(hv) && !hv.Dev {
				return refuse(RuleDevOtherBuild, fmt.Sprintf("a -dev interface runs only on the build it was made with, and %s is a stable release", b.Release))
			}
			if hv.less(g) {
				return refuse(RuleNewer, fmt.Sprintf("interface %d.%d is newer than the hv's %d.%d", g.Major, g.Minor, hv.Major, hv.Minor))
			}
			return refuse(RuleDevOtherBuild, fmt.Sprintf("a -dev interface runs only on the build it was made with, not on %s", b.Release))
		}
		if g.BuildID == "" {
			return refuse(RuleDevNoBuild, "the guest does not say which hv build it was made against")
		}
		if g.BuildID != b.BuildID {
			return refuse(RuleDevOtherBuild, fmt.Sprintf("guest was built against hv build %s, this is build %s", short(g.BuildID), short(b.BuildID)))
		}
		as := hv
		as.BuildID = b.BuildID
		return admit(Run, as, RuleDevSameBuild, "identical dev build")
	}
	if g.Major == hv.Major && g.Minor == hv.Minor {
		if hv.Dev {
			return refuse(RuleNotStable, fmt.Sprintf("%d.%d has no stable point release yet; %s is volatile", g.Major, g.Minor, b.Release))
		}
		return admit(Run, Interface{Major: g.Major, Minor: g.Minor}, RuleStableSame, "every point release of a stable line has the same interface")
	}
	if hv.less(g) {
		return refuse(RuleNewer, fmt.Sprintf("interface %d.%d is newer than the hv's %d.%d", g.Major, g.Minor, hv.Major, hv.Minor))
	}
	for _, c := range compat[[2]int{hv.Major, hv.Minor}] {
		if c == [2]int{g.Major, g.Minor} {
			return admit(Compat, Interface{Major: g.Major, Minor: g.Minor}, RuleCompatTable, fmt.Sprintf("%d.%d is in the compat table of %d.%d", g.Major, g.Minor, hv.Major, hv.Minor))
		}
	}
	return refuse(RuleNotInTable, fmt.Sprintf("%d.%d is not in the compat table of %d.%d", g.Major, g.Minor, hv.Major, hv.Minor))
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	if id == "" {
		return "(none)"
	}
	return id
}
