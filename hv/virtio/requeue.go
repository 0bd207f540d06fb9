package virtio

// Unpop gives back the last n chains taken from queue qi, for a device
// that took them and found it cannot use them yet: a received frame that
// needs more buffers than the driver has made available.
func (q *Queues) Unpop(qi, n int) {
	if qi >= 0 && qi < len(q.t.qs) {
		q.t.qs[qi].lastAvail -= uint16(n)
	}
}

// Features are the feature bits the driver accepted.
func (q *Queues) Features() uint64 { return q.t.drvFeatures }
