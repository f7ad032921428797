import ArgumentParser

/// Benchmarks for StreamBus: producer and consumer throughput/latency against a running or
/// spawned `databroker`, and the raw disk limits they are bounded by.
@main
struct SBBench: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sbbench",
    abstract: "StreamBus benchmarks: produce, consume, and raw disk limits.",
    discussion: """
      Every result is printed as a human-readable summary, or with --output json as one JSON \
      object per line (one per result), for scripts such as Benchmarks/run.sh.
      """,
    subcommands: [
      ProduceCommand.self, ConsumeCommand.self, DiskCommand.self, MetaCommand.self,
      ReplicationCommand.self,
    ])
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
  case text
  case json
}

/// Options shared by the commands that talk to a broker.
struct BrokerOptions: ParsableArguments {
  @Option(help: "Broker address host:port (comma-separated list; the first is used).")
  var brokers: String?

  @Flag(help: "Start a databroker --standalone in a temp dir for this run and kill it after.")
  var spawn = false

  @Option(help: "Build configuration of the spawned databroker: release or debug.")
  var spawnConfiguration: String = "release"

  @Option(
    help: ArgumentHelp(
      "Directory for the spawned broker's data (a fresh subdirectory is created and removed).",
      discussion: "Defaults to the current directory, so it is on the disk being measured."))
  var workDir: String = "."

  @Option(help: "Topic name (created if missing; a unique name is used when omitted).")
  var topic: String?

  @Option(help: "Partitions of the topic when it is created.")
  var partitions: Int32 = 1

  @Option(help: "Replication factor of the topic when it is created (-1: the cluster default).")
  var replicationFactor: Int16 = -1

  func validate() throws {
    if brokers == nil && !spawn {
      throw ValidationError("give --brokers HOST:PORT or --spawn")
    }
    if brokers != nil && spawn {
      throw ValidationError("--brokers and --spawn are mutually exclusive")
    }
    guard BuildConfigurationName(rawValue: spawnConfiguration) != nil else {
      throw ValidationError("--spawn-configuration must be release or debug")
    }
    guard (1...1024).contains(partitions) else {
      throw ValidationError("--partitions must be in 1...1024")
    }
  }
}

enum BuildConfigurationName: String {
  case debug
  case release
}
