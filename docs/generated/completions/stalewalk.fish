# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_stalewalk_global_optspecs
    string join \n h/help V/version
end

function __fish_stalewalk_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_stalewalk_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_stalewalk_using_subcommand
    set -l cmd (__fish_stalewalk_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c stalewalk -n "__fish_stalewalk_needs_command" -s h -l help -d 'Print help'
complete -c stalewalk -n "__fish_stalewalk_needs_command" -s V -l version -d 'Print version'
complete -c stalewalk -n "__fish_stalewalk_needs_command" -f -a "run" -d 'Boot a guest (the built-in mini guest unless --kernel is given)'
complete -c stalewalk -n "__fish_stalewalk_needs_command" -f -a "compare" -d 'Run a guest scenario once per kpgtable_free= policy and show the reports side by side'
complete -c stalewalk -n "__fish_stalewalk_needs_command" -f -a "replay" -d 'Drive the vIOMMU model through a scenario file, without KVM (language: docs/SCENARIOS.md)'
complete -c stalewalk -n "__fish_stalewalk_needs_command" -f -a "trace" -d 'Read invalidation traces written by `run --trace` (format: docs/TRACE-FORMAT.md)'
complete -c stalewalk -n "__fish_stalewalk_needs_command" -f -a "scenarios" -d 'List the mini guest\'s scenarios: what each shows, the device it needs, and its command-line knobs with their defaults'
complete -c stalewalk -n "__fish_stalewalk_needs_command" -f -a "completions" -d 'Print a shell completion script on standard output (e.g. `stalewalk completions bash > /etc/bash_completion.d/stalewalk`)'
complete -c stalewalk -n "__fish_stalewalk_needs_command" -f -a "gen-docs" -d 'Write the man pages and every completion script into DIR (how docs/generated/ is made: `cargo run --bin stalewalk -- gen-docs docs/generated`; a test checks it is current)'
complete -c stalewalk -n "__fish_stalewalk_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l kernel -d 'Kernel to boot: ELF (PVH note or 64-bit entry) or bzImage. Without it, the built-in mini guest boots' -r -F
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l initrd -d 'Initial ramdisk' -r -F
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l cmdline -d 'Guest kernel command line' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l memory -d 'Guest memory size (K, M, G, T suffixes; a plain number is MiB)' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l cpus -d 'Number of vCPUs' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l cpu-profile -d 'CPUID profile: emulation-safe hides what this KVM\'s instruction emulator cannot run; host passes KVM\'s supported CPUID through' -r -f -a "emulation-safe\t'Hide what KVM\'s instruction emulator cannot run (the default here)'
host\t'KVM\'s supported CPUID, unfiltered'"
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l serial -d 'Guest console output (COM1 and virtio-console): stdio (standard output), stderr, off or file=PATH. Default: stdio, or stderr with --report json (standard output then holds the JSON alone)' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l scenario -d 'Guest scenario to run (appends scenario=NAME to the command line)' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l viommu -d 'The virtual VT-d IOMMU (DMAR unit at 0xfed90000)' -r -f -a "on\t'Enabled'
off\t'Disabled'"
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l viommu-cache -d 'vIOMMU cache policy: adversarial (cache every present non-leaf entry of every walk, never evict), lru:N (N entries per cache) or none' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l viommu-check -d 'Stale-walk checker: re-walk memory after every cache hit (all), one in a sample (sampled), or never (off)' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l viommu-levels -d 'First-stage paging levels the vIOMMU supports (5 adds FL5LP)' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l sva-dev -d 'Add SVA DMA test devices at 00:04.0, 00:05.0, ... (`--sva-dev` adds one; `--sva-dev N` adds N)' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l device -d 'Add a device by name (repeatable): sva-dma' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l disk -d 'A raw disk image for virtio-blk at 00:02.0; `,ro` makes it read-only' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l dump-acpi -d 'Write each ACPI table as DIR/<SIG>.dat, exactly as the guest sees it' -r -F
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l report -d 'Also print the end-of-run report on standard output as JSON or as JUnit XML (the text report is always printed on standard error)' -r -f -a "text\t'For people (always printed on standard error at the end of a run)'
json\t'For machines: JSON on standard output'
junit\t'For CI: JUnit XML on standard output, one test case per verdict and per expectation (`run` and `compare`)'"
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l report-file -d 'Write the end-of-run report as JSON to PATH' -r -F
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l trace -d 'Write a trace (JSON Lines, docs/TRACE-FORMAT.md) to PATH' -r -F
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l trace-events -d 'Event kinds to trace, comma separated' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l seccomp -d 'seccomp filters per VMM thread (vCPU, VM, trace writer): on kills the VMM on a syscall off its thread\'s list, log only has the kernel log it, off installs none (docs/SECURITY.md)' -r -f -a "on\t'Enforce: a syscall off the list kills the process with `SIGSYS`'
log\t'Audit: a syscall off the list is allowed and logged by the kernel'
off\t'No filters'"
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l timeout -d 'Stop the guest after this much wall time (30, 2.5, 90s, 5m): the report and trace are written and the exit status is 124' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l emulate-in-vmm -d 'Instructions KVM\'s emulator cannot run (int3, popcnt, BMI, movbe, cmpxchg16b, fwait, x87/SSE control): on runs them in the VMM, off stops the guest (docs/EMULATION.md)' -r -f -a "on\t'Enabled'
off\t'Disabled'"
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l la57 -d 'Expose 5-level paging (LA57) to the guest in the emulation-safe profile'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -s v -l verbose -d 'Print what the VMM does on standard error'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l virtio-console -d 'Add virtio-console at 00:01.0 (output where --serial sends COM1\'s)'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -l virtio-rng -d 'Add virtio-rng at 00:03.0'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l policies -d 'Policies to run, in order (each adds kpgtable_free=POLICY to the guest command line)' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l kernel -d 'Kernel to boot: ELF (PVH note or 64-bit entry) or bzImage. Without it, the built-in mini guest boots' -r -F
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l initrd -d 'Initial ramdisk' -r -F
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l cmdline -d 'Guest kernel command line' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l memory -d 'Guest memory size (K, M, G, T suffixes; a plain number is MiB)' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l cpus -d 'Number of vCPUs' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l cpu-profile -d 'CPUID profile: emulation-safe hides what this KVM\'s instruction emulator cannot run; host passes KVM\'s supported CPUID through' -r -f -a "emulation-safe\t'Hide what KVM\'s instruction emulator cannot run (the default here)'
host\t'KVM\'s supported CPUID, unfiltered'"
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l serial -d 'Guest console output (COM1 and virtio-console): stdio (standard output), stderr, off or file=PATH. Default: stdio, or stderr with --report json (standard output then holds the JSON alone)' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l scenario -d 'Guest scenario to run (appends scenario=NAME to the command line)' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l viommu -d 'The virtual VT-d IOMMU (DMAR unit at 0xfed90000)' -r -f -a "on\t'Enabled'
off\t'Disabled'"
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l viommu-cache -d 'vIOMMU cache policy: adversarial (cache every present non-leaf entry of every walk, never evict), lru:N (N entries per cache) or none' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l viommu-check -d 'Stale-walk checker: re-walk memory after every cache hit (all), one in a sample (sampled), or never (off)' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l viommu-levels -d 'First-stage paging levels the vIOMMU supports (5 adds FL5LP)' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l sva-dev -d 'Add SVA DMA test devices at 00:04.0, 00:05.0, ... (`--sva-dev` adds one; `--sva-dev N` adds N)' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l device -d 'Add a device by name (repeatable): sva-dma' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l disk -d 'A raw disk image for virtio-blk at 00:02.0; `,ro` makes it read-only' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l dump-acpi -d 'Write each ACPI table as DIR/<SIG>.dat, exactly as the guest sees it' -r -F
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l report -d 'Also print the end-of-run report on standard output as JSON or as JUnit XML (the text report is always printed on standard error)' -r -f -a "text\t'For people (always printed on standard error at the end of a run)'
json\t'For machines: JSON on standard output'
junit\t'For CI: JUnit XML on standard output, one test case per verdict and per expectation (`run` and `compare`)'"
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l report-file -d 'Write the end-of-run report as JSON to PATH' -r -F
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l trace -d 'Write a trace (JSON Lines, docs/TRACE-FORMAT.md) to PATH' -r -F
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l trace-events -d 'Event kinds to trace, comma separated' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l seccomp -d 'seccomp filters per VMM thread (vCPU, VM, trace writer): on kills the VMM on a syscall off its thread\'s list, log only has the kernel log it, off installs none (docs/SECURITY.md)' -r -f -a "on\t'Enforce: a syscall off the list kills the process with `SIGSYS`'
log\t'Audit: a syscall off the list is allowed and logged by the kernel'
off\t'No filters'"
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l timeout -d 'Stop the guest after this much wall time (30, 2.5, 90s, 5m): the report and trace are written and the exit status is 124' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l emulate-in-vmm -d 'Instructions KVM\'s emulator cannot run (int3, popcnt, BMI, movbe, cmpxchg16b, fwait, x87/SSE control): on runs them in the VMM, off stops the guest (docs/EMULATION.md)' -r -f -a "on\t'Enabled'
off\t'Disabled'"
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l show-serial -d 'Show the guests\' serial output too'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l la57 -d 'Expose 5-level paging (LA57) to the guest in the emulation-safe profile'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -s v -l verbose -d 'Print what the VMM does on standard error'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l virtio-console -d 'Add virtio-console at 00:01.0 (output where --serial sends COM1\'s)'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -l virtio-rng -d 'Add virtio-rng at 00:03.0'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand compare" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand replay" -l report -d 'The report on standard output: text (the summary), json, or junit (JUnit XML: a test case per `expect` line)' -r -f -a "text\t'For people (always printed on standard error at the end of a run)'
json\t'For machines: JSON on standard output'
junit\t'For CI: JUnit XML on standard output, one test case per verdict and per expectation (`run` and `compare`)'"
complete -c stalewalk -n "__fish_stalewalk_using_subcommand replay" -l trace -d 'Write a trace (JSON Lines, docs/TRACE-FORMAT.md) to PATH' -r -F
complete -c stalewalk -n "__fish_stalewalk_using_subcommand replay" -l trace-events -d 'Event kinds to trace, comma separated' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand replay" -l outcomes -d 'Also list every `dma`/`walk` line\'s outcome (output address, page size, rights, or fault reason): an `outcomes` array in the JSON report, one line each in the summary'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand replay" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and not __fish_seen_subcommand_from summary diff plot export import-qemu grep help" -s h -l help -d 'Print help'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and not __fish_seen_subcommand_from summary diff plot export import-qemu grep help" -f -a "summary" -d 'Counts by type, granularity, IH, PASID and device; stale walks by class (the first few in full); the busiest address ranges'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and not __fish_seen_subcommand_from summary diff plot export import-qemu grep help" -f -a "diff" -d 'The summary counters of two traces side by side, with deltas (B - A)'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and not __fish_seen_subcommand_from summary diff plot export import-qemu grep help" -f -a "plot" -d 'An SVG timeline: invalidations by type over time, stale walks and faults as markers, guest serial lines as labels'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and not __fish_seen_subcommand_from summary diff plot export import-qemu grep help" -f -a "export" -d 'Export to the Chrome trace event format (Perfetto UI, chrome://tracing)'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and not __fish_seen_subcommand_from summary diff plot export import-qemu grep help" -f -a "import-qemu" -d 'Convert a QEMU intel-iommu trace log (QEMU run with -trace \'vtd_inv_*\' -trace vtd_dmar_fault -trace vtd_frr_new -D LOG) into a stalewalk trace of its invalidation descriptors and faults, decoded by the model\'s own decoder, for `trace diff` against a stalewalk run of the same guest (docs/QEMU-COMPARE.md)'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and not __fish_seen_subcommand_from summary diff plot export import-qemu grep help" -f -a "grep" -d 'Print the records (JSON lines) matching every filter given'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and not __fish_seen_subcommand_from summary diff plot export import-qemu grep help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from summary" -l json -d 'Print JSON (the summary, plus `counters` shaped like the report)'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from summary" -l allow-truncated -d 'Read a trace without an end record up to its last complete line'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from summary" -s h -l help -d 'Print help'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from diff" -l json -d 'Print JSON rows'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from diff" -l allow-truncated -d 'Read traces without an end record up to their last complete line'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from diff" -s h -l help -d 'Print help'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from plot" -s o -l output -d 'Output SVG file' -r -F
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from plot" -l allow-truncated -d 'Read a trace without an end record up to its last complete line'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from plot" -s h -l help -d 'Print help'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from export" -s o -l output -d 'Output JSON file' -r -F
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from export" -l chrome -d 'Chrome trace event format (the only export format)'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from export" -l allow-truncated -d 'Read a trace without an end record up to its last complete line'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from export" -s h -l help -d 'Print help'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from import-qemu" -s o -l output -d 'The stalewalk trace to write' -r -F
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from import-qemu" -s h -l help -d 'Print help'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from grep" -l pasid -d 'Only records about this PASID' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from grep" -l addr -d 'Only records touching this address or inclusive range (0xADDR or 0xFIRST-0xLAST; invalidations that are not page-selective touch every address)' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from grep" -l kind -d 'Only these kinds (comma-separated: inv,walk,fault,prq,stale,hint,serial)' -r
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from grep" -l allow-truncated -d 'Read a trace without an end record up to its last complete line'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from grep" -s h -l help -d 'Print help'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from help" -f -a "summary" -d 'Counts by type, granularity, IH, PASID and device; stale walks by class (the first few in full); the busiest address ranges'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from help" -f -a "diff" -d 'The summary counters of two traces side by side, with deltas (B - A)'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from help" -f -a "plot" -d 'An SVG timeline: invalidations by type over time, stale walks and faults as markers, guest serial lines as labels'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from help" -f -a "export" -d 'Export to the Chrome trace event format (Perfetto UI, chrome://tracing)'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from help" -f -a "import-qemu" -d 'Convert a QEMU intel-iommu trace log (QEMU run with -trace \'vtd_inv_*\' -trace vtd_dmar_fault -trace vtd_frr_new -D LOG) into a stalewalk trace of its invalidation descriptors and faults, decoded by the model\'s own decoder, for `trace diff` against a stalewalk run of the same guest (docs/QEMU-COMPARE.md)'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from help" -f -a "grep" -d 'Print the records (JSON lines) matching every filter given'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand trace; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand scenarios" -l json -d 'Print the list as JSON on standard output'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand scenarios" -s h -l help -d 'Print help'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand completions" -s h -l help -d 'Print help'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand gen-docs" -s h -l help -d 'Print help'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand help; and not __fish_seen_subcommand_from run compare replay trace scenarios completions gen-docs help" -f -a "run" -d 'Boot a guest (the built-in mini guest unless --kernel is given)'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand help; and not __fish_seen_subcommand_from run compare replay trace scenarios completions gen-docs help" -f -a "compare" -d 'Run a guest scenario once per kpgtable_free= policy and show the reports side by side'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand help; and not __fish_seen_subcommand_from run compare replay trace scenarios completions gen-docs help" -f -a "replay" -d 'Drive the vIOMMU model through a scenario file, without KVM (language: docs/SCENARIOS.md)'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand help; and not __fish_seen_subcommand_from run compare replay trace scenarios completions gen-docs help" -f -a "trace" -d 'Read invalidation traces written by `run --trace` (format: docs/TRACE-FORMAT.md)'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand help; and not __fish_seen_subcommand_from run compare replay trace scenarios completions gen-docs help" -f -a "scenarios" -d 'List the mini guest\'s scenarios: what each shows, the device it needs, and its command-line knobs with their defaults'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand help; and not __fish_seen_subcommand_from run compare replay trace scenarios completions gen-docs help" -f -a "completions" -d 'Print a shell completion script on standard output (e.g. `stalewalk completions bash > /etc/bash_completion.d/stalewalk`)'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand help; and not __fish_seen_subcommand_from run compare replay trace scenarios completions gen-docs help" -f -a "gen-docs" -d 'Write the man pages and every completion script into DIR (how docs/generated/ is made: `cargo run --bin stalewalk -- gen-docs docs/generated`; a test checks it is current)'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand help; and not __fish_seen_subcommand_from run compare replay trace scenarios completions gen-docs help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand help; and __fish_seen_subcommand_from trace" -f -a "summary" -d 'Counts by type, granularity, IH, PASID and device; stale walks by class (the first few in full); the busiest address ranges'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand help; and __fish_seen_subcommand_from trace" -f -a "diff" -d 'The summary counters of two traces side by side, with deltas (B - A)'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand help; and __fish_seen_subcommand_from trace" -f -a "plot" -d 'An SVG timeline: invalidations by type over time, stale walks and faults as markers, guest serial lines as labels'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand help; and __fish_seen_subcommand_from trace" -f -a "export" -d 'Export to the Chrome trace event format (Perfetto UI, chrome://tracing)'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand help; and __fish_seen_subcommand_from trace" -f -a "import-qemu" -d 'Convert a QEMU intel-iommu trace log (QEMU run with -trace \'vtd_inv_*\' -trace vtd_dmar_fault -trace vtd_frr_new -D LOG) into a stalewalk trace of its invalidation descriptors and faults, decoded by the model\'s own decoder, for `trace diff` against a stalewalk run of the same guest (docs/QEMU-COMPARE.md)'
complete -c stalewalk -n "__fish_stalewalk_using_subcommand help; and __fish_seen_subcommand_from trace" -f -a "grep" -d 'Print the records (JSON lines) matching every filter given'
