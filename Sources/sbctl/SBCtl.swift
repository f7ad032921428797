import ArgumentParser
import StreamBusClient

@main
struct SBCtl: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sbctl",
    abstract: "Administer StreamBus topics, produce and consume records.",
    discussion: """
      Brokers come from --brokers host:port,... or the SB_BROKERS environment variable, \
      metaservers from --metaservers host:port,... or SB_METASERVERS; topic commands go to \
      the metaservers when they are given (see docs/sbctl.md). \
      Exit codes: 0 success; 1 the cluster refused the request or some records failed; \
      2 the cluster could not be reached or did not answer in time; 64 invalid usage.
      """,
    subcommands: [
      TopicCommand.self, ProduceCommand.self, ConsumeCommand.self, QuorumCommand.self,
      ClusterCommand.self, BrokerCommand.self, LocalCommand.self, DrillCommand.self,
    ])

  /// `sbctl --cluster-dir D COMMAND ...` runs `sbctl COMMAND ... --cluster-dir D`: the flag
  /// belongs to the commands (a root option would take it from them), but scripts and docs
  /// may name the cluster first.
  static func main() async {
    await main(movingLeadingClusterDirectory(Array(CommandLine.arguments.dropFirst())))
  }

  static func movingLeadingClusterDirectory(_ arguments: [String]) -> [String] {
    var leading: [String]
    var rest: ArraySlice<String>
    if arguments.count >= 2 && arguments[0] == "--cluster-dir" {
      leading = Array(arguments[0..<2])
      rest = arguments[2...]
    } else if let first = arguments.first, first.hasPrefix("--cluster-dir=") {
      leading = [first]
      rest = arguments[1...]
    } else {
      return arguments
    }
    // Before a `--` that ends the options, else at the end.
    if let separator = rest.firstIndex(of: "--") {
      rest.insert(contentsOf: leading, at: separator)
      leading = []
    }
    return Array(rest) + leading
  }
}

struct TopicCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "topic",
    abstract: "Create, list, describe, delete and configure topics.",
    subcommands: [
      TopicCreateCommand.self, TopicListCommand.self, TopicDescribeCommand.self,
      TopicDeleteCommand.self, TopicAlterConfigCommand.self,
    ])
}
