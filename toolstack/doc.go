// Package toolstack is the libxl of xeno: it turns an xl.cfg into a
// resolved domain configuration, checks it against the host and the hv
// (the interface policy lives in hv/abi; this package only asks it), and
// runs the domain lifecycle over a state directory of per-domain records.
package toolstack
