// Package configsync mirrors etcd key prefixes into local directories.
//
// Each key under a mapping's prefix becomes one file beneath the mapping's
// directory, at the key minus the prefix, '/' making subdirectories
// (RelPath holds that rule, and the list of keys it refuses). A Dir writes
// those files atomically — a randomly named temporary file in the same
// directory, fsync, rename, fsync of the directory — and skips a write
// whose bytes and mode are already on disk, so readers see either the old
// file or the new one, never an empty or half-written one. Every operation
// goes through an os.Root opened on the directory, so nothing is created,
// replaced or removed outside it, whatever symbolic links exist inside it.
//
// Names with an element that starts with ".." are the package's own
// (temporary files, and the "..data" link and payload directories of the
// snapshot layout); no key can produce one.
//
// A Snapshot is the other layout, Kubernetes' ConfigMap-volume scheme: a
// batch is built in a new payload directory and made visible at once by
// renaming a new "..data" link over the old one.
//
// A Mapping is the sync engine: it lists the prefix at one revision R (in
// pages at R), writes the files and removes those etcd no longer has, then
// watches from R+1 and applies each watch response as it comes (those that
// queued up meanwhile as one batch); after a compaction, a failed write or
// an outage it lists and diffs again, and meanwhile the files stay as they
// were. Config.Validate holds the rules of a mapping's settings, and
// LookupOwner resolves the owner and group of its files.
//
// The package is not an etcd client wrapper, a template renderer or a
// process supervisor; a Reloader runs a mapping's on_change (a command or
// a signal) once per burst of batches.
package configsync
