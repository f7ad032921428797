import ArgumentParser

@main
struct RaftBench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "raft-bench",
    abstract: "Benchmarks of the Raft building blocks.",
    subcommands: [StorageBenchmarkCommand.self, ClusterBenchmarkCommand.self])
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
  case text
  case json
}
