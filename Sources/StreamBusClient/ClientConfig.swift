import Logging
import StreamBusTransport

/// Settings shared by `Admin`, `Producer` and `Consumer`: where the cluster is and how
/// patiently to talk to it.
public struct ClientConfig: Sendable {
  /// Brokers asked for metadata first; one reachable broker is enough to learn the rest.
  public var bootstrapBrokers: [HostPort]
  /// Sent in every request header (shows up in broker logs).
  public var clientId: String
  /// How long one request may wait for its response.
  public var requestTimeoutMs: Int64 = 30_000
  public var connectTimeoutMs: Int64 = 10_000
  /// How many times a failed metadata or admin request is tried again (not produce: the
  /// producer retries until `ProducerConfig.deliveryTimeoutMs`).
  public var retries: Int = 5
  /// First wait before a retry; doubles per attempt up to `retryBackoffMaxMs`, with jitter.
  public var retryBackoffMs: Int64 = 100
  public var retryBackoffMaxMs: Int64 = 1_000
  /// Cached metadata older than this is refreshed before use.
  public var metadataMaxAgeMs: Int64 = 300_000
  /// How long `Producer.send` waits for a topic that metadata does not know yet (it may have
  /// just been created).
  public var metadataWaitMs: Int64 = 3_000
  /// How long one broker may take to answer a metadata request before the next known broker
  /// is asked (at most `requestTimeoutMs`): a broker cut off by a network partition must not
  /// hold up learning who leads in its place.
  public var metadataAttemptTimeoutMs: Int64 = 1_000
  public var logger: Logger = Logger(label: "streambus.client") { _ in SwiftLogNoOpLogHandler() }

  public init(bootstrapBrokers: [HostPort], clientId: String = "streambus-client") {
    self.bootstrapBrokers = bootstrapBrokers
    self.clientId = clientId
  }

  /// Parses "host:port,host:port".
  public static func parseBrokers(_ text: String) throws -> [HostPort] {
    let parts = text.split(separator: ",").map { String($0) }.filter {
      !$0.allSatisfy(\.isWhitespace)
    }
    guard !parts.isEmpty else {
      throw StreamBusError(.invalidArgument, "no broker address in \"\(text)\"")
    }
    return try parts.map { part in
      do {
        return try HostPort(parsing: part)
      } catch let error as TransportError {
        throw StreamBusError(.invalidArgument, error.message)
      }
    }
  }

  /// Backoff before retry number `attempt` (1-based): exponential, capped, with ±20 % jitter
  /// so clients that failed together do not retry in lockstep.
  func backoffMs(attempt: Int) -> Int64 {
    let exponent = min(max(attempt - 1, 0), 20)
    let base = min(retryBackoffMs.saturatingMultiply(1 << exponent), retryBackoffMaxMs)
    let jitter = Double.random(in: 0.8...1.2)
    return max(1, Int64(Double(base) * jitter))
  }
}

extension Int64 {
  func saturatingMultiply(_ other: Int64) -> Int64 {
    let (result, overflow) = multipliedReportingOverflow(by: other)
    return overflow ? Int64.max : result
  }
}
