package main

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/sidecar-dev/sidecar/registry"
)

// negativeNumber is an argument such as -1: a number for `sidecar weight`,
// which has no short flags made of digits.
var negativeNumber = regexp.MustCompile(`^-[0-9]+$`)

func newWeightCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "weight N",
		Short: fmt.Sprintf("Set this sidecar's registered weight (0..%d; 0 = drain: listed, never picked)", registry.MaxWeight),
		// cobra would read -1 as an unknown shorthand flag; weightArgs
		// parses the flags itself so that -1 reaches the range check.
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, raw []string) error {
			args, helped, err := weightArgs(cmd, raw)
			if err != nil || helped {
				return err
			}
			n, err := parseWeight(args)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if err := newClient(cmd).SetWeight(cmd.Context(), n); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "weight %d\n", n)
			return nil
		},
	}
}

// weightArgs parses the flags of `sidecar weight` (--socket, --help) out of
// raw, keeping arguments such as -1 as arguments, and returns the
// arguments; helped is true when it showed the help instead.
func weightArgs(cmd *cobra.Command, raw []string) (args []string, helped bool, err error) {
	var nums, rest []string
	for _, a := range raw {
		if negativeNumber.MatchString(a) {
			nums = append(nums, a)
		} else {
			rest = append(rest, a)
		}
	}
	cmd.DisableFlagParsing = false // ParseFlags does nothing while it is set
	defer func() { cmd.DisableFlagParsing = true }()
	if err := cmd.ParseFlags(rest); err != nil {
		return nil, false, cmd.FlagErrorFunc()(cmd, err)
	}
	if help, _ := cmd.Flags().GetBool("help"); help {
		return nil, true, cmd.Help()
	}
	return append(nums, cmd.Flags().Args()...), false, nil
}

// parseWeight reads the one argument N of `sidecar weight`, in
// 0..registry.MaxWeight.
func parseWeight(args []string) (int, error) {
	if len(args) != 1 {
		return 0, fmt.Errorf("sidecar: weight takes one argument, the weight N in 0..%d (got %d)", registry.MaxWeight, len(args))
	}
	n, err := strconv.Atoi(args[0])
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, fmt.Errorf("sidecar: weight %s: want 0..%d (0 = drain)", args[0], registry.MaxWeight)
		}
		return 0, fmt.Errorf("sidecar: weight %q: want a whole number in 0..%d", args[0], registry.MaxWeight)
	}
	if n < 0 || n > registry.MaxWeight {
		return 0, fmt.Errorf("sidecar: weight %d: want 0..%d (0 = drain)", n, registry.MaxWeight)
	}
	return n, nil
}
