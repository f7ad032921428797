import ArgumentParser
import StreamBusClient

@main
struct SBCtl: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sbctl",
    abstract: "Administer StreamBus topics, produce and consume records.",
    discussion: """
      Brokers come from --brokers host:port,... or the SB_BROKERS environment variable. \
      Exit codes: 0 success; 1 the cluster refused the request or some records failed; \
      2 the cluster could not be reached or did not answer in time; 64 invalid usage.
      """,
    subcommands: [
      TopicCommand.self, ProduceCommand.self, ConsumeCommand.self, LocalCommand.self,
    ])
}

struct TopicCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "topic",
    abstract: "Create, list, describe and delete topics.",
    subcommands: [
      TopicCreateCommand.self, TopicListCommand.self, TopicDescribeCommand.self,
      TopicDeleteCommand.self,
    ])
}
