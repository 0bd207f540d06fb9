// Package initd is the logic of xeno-init, the static PID 1 of xeno
// images: it mounts the kernel file systems, loads the image's modules,
// learns which hv it runs on through the info port, decides from its
// pinned interface whether to run, run in compat mode or refuse, runs the
// image's command and powers off when it ends.
package initd
