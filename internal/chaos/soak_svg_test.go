package chaos

import (
	"bytes"
	"fmt"
	"html"
	"strings"
)

// soakPanels groups the CSV's columns into the plot's panels: a panel
// shows every column whose name ends with one of its suffixes.
var soakPanels = []struct {
	title    string
	suffixes []string
}{
	{"RSS (MiB) per sidecar", []string{"_rss_mib"}},
	{"goroutines per sidecar", []string{"_goroutines"}},
	{"open fds per sidecar", []string{"_fds"}},
	{"lease renewals per second: measured, and what the live leases call for", []string{"renewals_per_s", "renewals_want_per_s"}},
	{"etcd db size and size in use (MiB, largest member)", []string{"db_mib", "db_in_use_mib"}},
	{"leases (live, leaked) and keys under /sidecar/", []string{"leases", "leases_leaked", "keys"}},
}

var soakColors = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"}

// soakSVG draws each panel of soakPanels as a line chart of the columns
// against the first (time in seconds): a small, dependency-free SVG.
func soakSVG(names []string, rows [][]float64) []byte {
	const width, panelH, left, right, top, gap = 900, 170, 70, 20, 30, 45
	var b bytes.Buffer
	height := top + len(soakPanels)*(panelH+gap)
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="14">sidecar soak: %d samples over %.0f s</text>`+"\n", left, len(rows), rows[len(rows)-1][0])
	tMax := max(rows[len(rows)-1][0], 1)
	plotW := float64(width - left - right)
	for pi, panel := range soakPanels {
		y0 := float64(top + pi*(panelH+gap) + 20)
		var cols []int
		for i, n := range names {
			for _, s := range panel.suffixes {
				if strings.HasSuffix(n, s) && (s != "leases" || n == "leases") {
					cols = append(cols, i)
				}
			}
		}
		lo, hi := 0.0, 0.0
		for _, r := range rows {
			for _, c := range cols {
				hi = max(hi, r[c])
			}
		}
		hi = max(hi*1.1, 1)
		fmt.Fprintf(&b, `<text x="%d" y="%.0f">%s</text>`+"\n", left, y0-6, html.EscapeString(panel.title))
		fmt.Fprintf(&b, `<rect x="%d" y="%.0f" width="%.0f" height="%d" fill="none" stroke="#888"/>`+"\n", left, y0, plotW, panelH)
		fmt.Fprintf(&b, `<text x="%d" y="%.0f" text-anchor="end">%.4g</text>`+"\n", left-4, y0+10, hi)
		fmt.Fprintf(&b, `<text x="%d" y="%.0f" text-anchor="end">%.4g</text>`+"\n", left-4, y0+panelH, lo)
		fmt.Fprintf(&b, `<text x="%d" y="%.0f">0 s</text>`+"\n", left, y0+panelH+14)
		fmt.Fprintf(&b, `<text x="%d" y="%.0f" text-anchor="end">%.0f s</text>`+"\n", width-right, y0+panelH+14, tMax)
		for k, c := range cols {
			var pts []string
			for _, r := range rows {
				x := float64(left) + r[0]/tMax*plotW
				y := y0 + panelH - (r[c]-lo)/(hi-lo)*panelH
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
			}
			color := soakColors[k%len(soakColors)]
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", color, strings.Join(pts, " "))
			fmt.Fprintf(&b, `<text x="%d" y="%.0f" fill="%s">%s</text>`+"\n", left+10+k*150, y0+panelH+28, color, html.EscapeString(names[c]))
		}
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}
