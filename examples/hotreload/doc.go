// Hotreload is an example service that takes its settings from a directory
// the sidecar mirrors from etcd, and picks up every change without a
// restart.
//
// Each setting is one file in the directory (-dir), named after the
// setting; its content, trimmed of surrounding white space, is the value,
// and a missing or blank file gives the setting's default. The service
// watches the directory, not the files, with fsnotify: the sidecar replaces
// a file by renaming a new one over it (the files layout), or swaps a
// "..data" symlink to a new payload directory (the snapshot layout, as
// Kubernetes does for ConfigMap volumes), and neither is seen by a watch on
// the old file. On any event in the directory it re-reads every setting
// once the events have been quiet for 50ms, and logs what changed.
//
// GET / answers with the current settings ("hello (color=blue)"), GET
// /healthz with 200 for the sidecar's health check.
//
// It is an example, not a library: it does not follow subdirectories, and
// it does not notice the directory itself being removed or replaced.
package main
