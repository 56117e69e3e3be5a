/**
 * `pmjq --completions bash|zsh|fish`: a completion script that knows the
 * subcommands and each one's options, written from the same grammars the
 * parser checks words with (grammar.ts). An option's value is completed as
 * what it names: a directory for DIR, a file for FILE, a choice from its list.
 */
import type { Flag, Grammar } from "./grammar.js"

export type Shell = "bash" | "zsh" | "fish"

/** The daemon's grammar under "", each subcommand's under its name. */
export type Grammars = ReadonlyArray<readonly [command: string, grammar: Grammar]>

const valueKind = (flag: Flag): "dir" | "file" | "choice" | "other" =>
  flag.choices.length > 0 ? "choice" : flag.value === "DIR" ? "dir" : flag.value === "FILE" ? "file" : "other"

const allNames = (g: Grammar) => [...g.flags.flatMap((f) => f.names), "--help"].join(" ")

const bash = (grammars: Grammars) => {
  const subcommands = grammars.map(([name]) => name).filter((name) => name !== "")
  const valueCases = grammars.flatMap(([, g]) => g.flags).filter((f) => f.value !== null)
  const uniqueCases = [...new Map(valueCases.map((f) => [f.names.join("|"), f])).values()]
  return `# bash completion for pmjq (pmjq --completions bash)
_pmjq() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]} command="" word
  for word in "\${COMP_WORDS[@]:1:COMP_CWORD-1}"; do
    case $word in ${subcommands.join("|")}) command=$word; break ;; -*) ;; *) break ;; esac
  done
  case $prev in
${
    uniqueCases.map((f) => {
      const kind = valueKind(f)
      const action = kind === "dir"
        ? `mapfile -t COMPREPLY < <(compgen -d -- "$cur")`
        : kind === "file"
        ? `mapfile -t COMPREPLY < <(compgen -f -- "$cur")`
        : kind === "choice"
        ? `mapfile -t COMPREPLY < <(compgen -W "${f.choices.join(" ")}" -- "$cur")`
        : `COMPREPLY=()`
      return `    ${f.names.join("|")}) ${action}; return ;;`
    }).join("\n")
  }
  esac
  local options
  case $command in
${grammars.map(([name, g]) => `    ${name === "" ? '""' : name}) options="${allNames(g)}${name === "" ? " --version --completions" : ""}" ;;`).join("\n")}
  esac
  # One name a line, never split on blanks nor globbed: a folder "my dir" stays whole.
  if [[ $cur == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$options" -- "$cur")
  elif [[ -z $command && $COMP_CWORD -eq 1 ]]; then
    mapfile -t COMPREPLY < <(compgen -W "${subcommands.join(" ")}" -- "$cur"; compgen -d -- "$cur")
  else
    mapfile -t COMPREPLY < <(compgen -f -- "$cur")
  fi
}
complete -o filenames -F _pmjq pmjq
`
}

const zshQuote = (text: string) => text.replace(/'/g, `'\\''`).replace(/[[\]:]/g, "\\$&")

const zshSpecs = (g: Grammar) =>
  g.flags.map((f) => {
    const kind = valueKind(f)
    const action = f.value === null ? "" : kind === "dir" ? ":dir:_files -/" : kind === "file" ? ":file:_files" : kind === "choice" ? `:value:(${f.choices.join(" ")})` : `:${zshQuote(f.value)}: `
    const names = f.names.length > 1 ? `(${f.names.join(" ")})'{${f.names.join(",")}}'` : f.names[0]!
    return `    '${names}${action}'`
  })

const zsh = (grammars: Grammars) => {
  const subcommands = grammars.filter(([name]) => name !== "")
  const daemon = grammars.find(([name]) => name === "")?.[1]
  return `#compdef pmjq
# zsh completion for pmjq (pmjq --completions zsh)
_pmjq() {
  if (( CURRENT > 2 )) && [[ \${words[2]} == (${subcommands.map(([name]) => name).join("|")}) ]]; then
    local command=\${words[2]}
    shift words; (( CURRENT-- ))
    case $command in
${
    subcommands.map(([name, g]) => `      ${name}) _arguments -s \\\n${[...zshSpecs(g), "    '1:job spool:_files -/'", "    '*:file:_files'"].map((l) => `      ${l}`).join(" \\\n")} ;;`).join("\n")
  }
    esac
    return
  fi
  _arguments -s \\
${[...(daemon === undefined ? [] : zshSpecs(daemon)), "    '--version[print the version]'", "    '--completions:shell:(bash zsh fish)'", `    '1:job spool or command:{_alternative "commands:command:(${subcommands.map(([name]) => name).join(" ")})" "dirs:job spool:_files -/"}'`].join(" \\\n")}
}
_pmjq "$@"
`
}

const fishQuote = (text: string) => `'${text.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`

const fish = (grammars: Grammars) => {
  const subcommands = grammars.filter(([name]) => name !== "").map(([name]) => name)
  const lines = [
    "# fish completion for pmjq (pmjq --completions fish)",
    "complete -c pmjq -f",
    `complete -c pmjq -n '__fish_use_subcommand' -a '${subcommands.join(" ")}'`,
    "complete -c pmjq -n '__fish_use_subcommand' -a '(__fish_complete_directories)'",
    "complete -c pmjq -n '__fish_use_subcommand' -l version",
    "complete -c pmjq -n '__fish_use_subcommand' -l completions -x -a 'bash zsh fish'"
  ]
  for (const [name, g] of grammars) {
    const when = name === "" ? "__fish_use_subcommand" : `__fish_seen_subcommand_from ${name}`
    for (const f of g.flags) {
      const names = f.names.map((n) => (n.startsWith("--") ? `-l ${n.slice(2)}` : `-s ${n.slice(1)}`)).join(" ")
      const kind = valueKind(f)
      const value = f.value === null ? "" : kind === "dir" ? " -r -a '(__fish_complete_directories)'" : kind === "file" ? " -r -F" : kind === "choice" ? ` -x -a ${fishQuote(f.choices.join(" "))}` : " -x"
      lines.push(`complete -c pmjq -n ${fishQuote(when)} ${names}${value}`)
    }
    if (name !== "") lines.push(`complete -c pmjq -n ${fishQuote(when)} -F`)
  }
  return lines.join("\n") + "\n"
}

export const completionScript = (shell: Shell, grammars: Grammars): string =>
  shell === "bash" ? bash(grammars) : shell === "zsh" ? zsh(grammars) : fish(grammars)
