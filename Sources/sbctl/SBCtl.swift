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
      ClusterCommand.self, BrokerCommand.self, LocalCommand.self,
    ])
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
