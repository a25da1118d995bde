
use builtin;
use str;

set edit:completion:arg-completer[memorun] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'memorun'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'memorun'= {
            cand -e 'Include environment variables whose name matches PATTERN in the key'
            cand --env 'Include environment variables whose name matches PATTERN in the key'
            cand -i 'Include the content of a file, a directory tree or a quoted glob'
            cand --input 'Include the content of a file, a directory tree or a quoted glob'
            cand --exclude 'Leave paths matching this glob out of `--input` walks and globs'
            cand -x 'Leave arguments matching this glob out of the key'
            cand --ignore-arg 'Leave arguments matching this glob out of the key'
            cand -k 'Put extra literal text into the key'
            cand --key 'Put extra literal text into the key'
            cand --key-cmd 'Run CMD with `sh -c` and put its stdout and exit status into the key'
            cand --stdin 'How stdin goes into the key: auto, hash or ignore'
            cand --base-dir 'Key paths under DIR relative to it [env: MEMORUN_BASE_DIR]'
            cand -o 'A file, directory or quoted glob the command writes: restored on a hit'
            cand --output 'A file, directory or quoted glob the command writes: restored on a hit'
            cand --trace-exclude 'Leave paths matching this glob out of what --trace records'
            cand -t 'Do not replay an entry older than DURATION'
            cand --ttl 'Do not replay an entry older than DURATION'
            cand --stale 'Past this age, replay at once and refresh in the background'
            cand --remote 'A cache shared between machines [env: MEMORUN_REMOTE]'
            cand --cache-dir 'Where the store lives [env: MEMORUN_DIR]'
            cand --no-auto-inputs 'Do not hash arguments that name existing files'
            cand --no-cwd 'Leave the working directory out of the key'
            cand --no-auto-outputs 'Do not capture the files the command creates that are named on its command line'
            cand --trace 'Trace the command''s file-system calls and key on every file it read'
            cand --no-default-trace-excludes 'Do not leave out the toolchain state --trace leaves out by default'
            cand --cache-failures 'Also record runs that exit with a non-zero code'
            cand -f 'Run even on a hit, and record the new result'
            cand --force 'Run even on a hit, and record the new result'
            cand --no-cache 'Run plainly: neither read nor write the cache'
            cand --remote-read-only 'Look entries up on the remote, never write to it [env: MEMORUN_REMOTE_READ_ONLY]'
            cand -v 'Print a one-line status on stderr (hit or miss, time saved)'
            cand --verbose 'Print a one-line status on stderr (hit or miss, time saved)'
            cand -q 'Print no warnings'
            cand --quiet 'Print no warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand why 'Explain whether COMMAND would hit or miss, and why; runs nothing'
            cand stats 'Show counters, sizes and time saved'
            cand list 'List the recorded entries, newest first'
            cand clear 'Remove entries: all of them, or those matching the filters'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'memorun;why'= {
            cand -e 'Include environment variables whose name matches PATTERN in the key'
            cand --env 'Include environment variables whose name matches PATTERN in the key'
            cand -i 'Include the content of a file, a directory tree or a quoted glob'
            cand --input 'Include the content of a file, a directory tree or a quoted glob'
            cand --exclude 'Leave paths matching this glob out of `--input` walks and globs'
            cand -x 'Leave arguments matching this glob out of the key'
            cand --ignore-arg 'Leave arguments matching this glob out of the key'
            cand -k 'Put extra literal text into the key'
            cand --key 'Put extra literal text into the key'
            cand --key-cmd 'Run CMD with `sh -c` and put its stdout and exit status into the key'
            cand --stdin 'How stdin goes into the key: auto, hash or ignore'
            cand --base-dir 'Key paths under DIR relative to it [env: MEMORUN_BASE_DIR]'
            cand -o 'A file, directory or quoted glob the command writes: restored on a hit'
            cand --output 'A file, directory or quoted glob the command writes: restored on a hit'
            cand --trace-exclude 'Leave paths matching this glob out of what --trace records'
            cand -t 'Do not replay an entry older than DURATION'
            cand --ttl 'Do not replay an entry older than DURATION'
            cand --stale 'Past this age, replay at once and refresh in the background'
            cand --remote 'A cache shared between machines [env: MEMORUN_REMOTE]'
            cand --cache-dir 'Where the store lives [env: MEMORUN_DIR]'
            cand --json 'Print a JSON object instead of text'
            cand --no-auto-inputs 'Do not hash arguments that name existing files'
            cand --no-cwd 'Leave the working directory out of the key'
            cand --no-auto-outputs 'Do not capture the files the command creates that are named on its command line'
            cand --trace 'Trace the command''s file-system calls and key on every file it read'
            cand --no-default-trace-excludes 'Do not leave out the toolchain state --trace leaves out by default'
            cand --cache-failures 'Also record runs that exit with a non-zero code'
            cand -f 'Run even on a hit, and record the new result'
            cand --force 'Run even on a hit, and record the new result'
            cand --no-cache 'Run plainly: neither read nor write the cache'
            cand --remote-read-only 'Look entries up on the remote, never write to it [env: MEMORUN_REMOTE_READ_ONLY]'
            cand -v 'Print a one-line status on stderr (hit or miss, time saved)'
            cand --verbose 'Print a one-line status on stderr (hit or miss, time saved)'
            cand -q 'Print no warnings'
            cand --quiet 'Print no warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'memorun;stats'= {
            cand --cache-dir 'Where the store lives [env: MEMORUN_DIR]'
            cand --json 'Print a JSON object instead of a table'
            cand --zero 'Reset the counters (the entries stay)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'memorun;list'= {
            cand -n 'Only the N newest entries'
            cand --limit 'Only the N newest entries'
            cand --cache-dir 'Where the store lives [env: MEMORUN_DIR]'
            cand --json 'Print a JSON array instead of a table'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'memorun;clear'= {
            cand --older-than 'Only entries last used longer ago than DURATION'
            cand --cache-dir 'Where the store lives [env: MEMORUN_DIR]'
            cand --failed 'Only entries of runs that exited with a non-zero code'
            cand --dry-run 'Say what would be removed, and remove nothing'
            cand --all 'Reset the cache: delete its database, hit log and blobs, then start a new store'
            cand --prefix 'With -- COMMAND: every command that starts with those words'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'memorun;completions'= {
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'memorun;help'= {
            cand why 'Explain whether COMMAND would hit or miss, and why; runs nothing'
            cand stats 'Show counters, sizes and time saved'
            cand list 'List the recorded entries, newest first'
            cand clear 'Remove entries: all of them, or those matching the filters'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'memorun;help;why'= {
        }
        &'memorun;help;stats'= {
        }
        &'memorun;help;list'= {
        }
        &'memorun;help;clear'= {
        }
        &'memorun;help;completions'= {
        }
        &'memorun;help;help'= {
        }
    ]
    $completions[$command]
}
