package initd

import (
	"fmt"
	"strings"

	"github.com/xeno-hv/xeno/hv/abi"
)

// maxItem bounds what the guest reads of one info item: the hv is trusted
// more than a disk, but a broken device answering a huge length must not
// make PID 1 spin or allocate.
const maxItem = 4096

// HVInfo is what the info port told us about the hv.
type HVInfo struct {
	Release   string // SelRelease, "1.2.3": our xen_version()
	BuildID   string
	Changeset string
	Caps      string
	Admitted  string // SelInterface, "1.2" or "1.1 compat"
}

// ReadItem reads one info item, or ok=false if the hv does not offer it.
func ReadItem(p Ports, sel uint16) (string, bool) {
	p.Outw(abi.PortInfoSelect, sel)
	n := p.Inl(abi.PortInfoLen)
	if n == abi.LenUnsupported || n > maxItem {
		return "", false
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = p.Inb(abi.PortInfoData)
	}
	return string(b), true
}

// ErrNoInfoPort says the info port is absent: no xeno hv (QEMU, another
// hypervisor, bare metal), or an hv older than interface 1.1.
var ErrNoInfoPort = fmt.Errorf("no xeno info port: not running under xeno hv")

// ReadInfo reads the hv's identity through the info port.
func ReadInfo(p Ports) (HVInfo, error) {
	sig, ok := ReadItem(p, abi.SelSignature)
	if !ok || sig != "XenoHV" {
		return HVInfo{}, ErrNoInfoPort
	}
	var h HVInfo
	h.Release, ok = ReadItem(p, abi.SelRelease)
	if !ok {
		return HVInfo{}, fmt.Errorf("xeno info port: no release item")
	}
	h.BuildID, _ = ReadItem(p, abi.SelBuildID)
	h.Changeset, _ = ReadItem(p, abi.SelChangeset)
	h.Caps, _ = ReadItem(p, abi.SelCaps)
	h.Admitted, _ = ReadItem(p, abi.SelInterface)
	return h, nil
}

// Rule of the guest side when the hv's line is newer than anything this
// guest's interface table knows: its caps are the only word we have.
const RuleHVCaps = "hv-caps"

// Decide is the guest's admission check, made from its own pinned
// interface and what the hv says it is. It is abi.Admit, the rule the
// toolstack applies, evaluated in the guest against the release and build
// id the hv reports, so the guest reaches the same verdict even when the
// toolstack's check was bypassed and the hv presents its native interface.
// One addition: an hv whose line is newer than this guest's table is
// judged by its caps string, which lists the interfaces it serves.
func Decide(pinned abi.Interface, h HVInfo) (abi.Decision, error) {
	rel, err := abi.ParseRelease(strings.TrimSpace(h.Release))
	if err != nil {
		return abi.Decision{}, fmt.Errorf("hv reports release %q: %w", h.Release, err)
	}
	b := abi.Build{Release: rel, BuildID: h.BuildID, Changeset: h.Changeset}
	d := abi.Admit(b, pinned)
	hvLine := rel.Interface()
	if d.Verdict == abi.Refuse && !abi.Known(hvLine) && !pinned.Dev {
		for _, c := range strings.Fields(h.Caps) {
			if c == pinned.Cap() {
				as := abi.Interface{Major: pinned.Major, Minor: pinned.Minor}
				return abi.Decision{Verdict: abi.Compat, Admitted: as, Rule: RuleHVCaps,
					Reason: fmt.Sprintf("guest interface %s admitted by hv %s as %s compat (rule %s): the hv lists %s in its caps", pinned.Short(), rel, as.Short(), RuleHVCaps, c)}, nil
			}
		}
	}
	return d, nil
}

// ShutdownOffered reports whether the hv gives this guest the shutdown
// port: judged from the interface the hv admitted us as, else its own.
func ShutdownOffered(h HVInfo) bool {
	if f := strings.Fields(h.Admitted); len(f) > 0 {
		if in, err := abi.ParseInterface(f[0]); err == nil {
			return abi.Has(in, abi.FeatShutdown)
		}
	}
	rel, err := abi.ParseRelease(h.Release)
	return err == nil && abi.Has(rel.Interface(), abi.FeatShutdown)
}

// RefuseLine is the one console line a refusing guest prints.
func RefuseLine(pinned abi.Interface, h HVInfo, d abi.Decision) string {
	return fmt.Sprintf("xeno-init: refusing to run: guest interface %s, hv release %s, rule %s (%s)", pinned.Short(), h.Release, d.Rule, d.Reason)
}
