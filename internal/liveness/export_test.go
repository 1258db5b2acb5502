package liveness

// StreamContext is streamContext, for tests that share the monitor's
// watch stream.
var StreamContext = streamContext
