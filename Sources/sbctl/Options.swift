import ArgumentParser
import Foundation
import StreamBusClient

/// `--output`: human-readable table (default), one JSON document, or JSON lines.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
  case table
  case json
  case jsonl
}

/// Flags every command has.
struct CommonOptions: ParsableArguments {
  @Option(help: "Comma-separated host:port list (default: $SB_BROKERS).")
  var brokers: String?

  @Option(help: "Output format: table, json (produce and consume also jsonl).")
  var output: OutputFormat = .table

  @Option(help: "How long one request may wait for its response.")
  var requestTimeoutMs: Int64 = 30_000

  /// The client configuration, from `--brokers` or else `SB_BROKERS`.
  func clientConfig(environment: [String: String] = ProcessInfo.processInfo.environment)
    throws -> ClientConfig
  {
    guard let text = brokers ?? environment["SB_BROKERS"],
      !text.allSatisfy(\.isWhitespace)
    else {
      throw ValidationError(
        "no brokers: pass --brokers host:port[,host:port...] or set SB_BROKERS")
    }
    let parsed: [HostPort]
    do {
      parsed = try ClientConfig.parseBrokers(text)
    } catch let error as StreamBusError {
      throw ValidationError("--brokers: \(error.message)")
    }
    var config = ClientConfig(bootstrapBrokers: parsed, clientId: "sbctl")
    config.requestTimeoutMs = requestTimeoutMs
    return config
  }

  func requireTableOrJSON() throws {
    if output == .jsonl {
      throw ValidationError("--output jsonl is only for produce and consume; use table or json")
    }
  }
}
