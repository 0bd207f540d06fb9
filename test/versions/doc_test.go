// Package versions_test runs the interface-version matrix of
// docs/versions.md end to end: three hv releases built from this tree
// (1.2.0, 1.2.3, 1.3.0-dev, the last as the same build and as another
// build), guests that target 1.1, 1.2 and 1.3-dev, and every cell twice:
// once at the toolstack, where a refusal starts nothing, and once with the
// toolstack's check bypassed, where the guest's own runtime check decides
// from what the running hv tells it through the info port.
package versions_test
