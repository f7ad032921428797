/// When each broker last heartbeated, as seen by the current controller.
///
/// In memory only, never replicated: timestamps from another machine's clock mean nothing
/// here. Times are milliseconds of a monotonic clock the caller owns.
public struct BrokerSessions: Sendable, Hashable {
  public static let sessionTimeoutMsDefault: Int64 = 1_500

  private var lastHeartbeatMs: [BrokerID: Int64] = [:]
  /// Brokers with no heartbeat since the last reset count as having heartbeated at this time.
  public private(set) var baselineMs: Int64

  public init(nowMs: Int64) {
    baselineMs = nowMs
  }

  /// Call on becoming controller: every broker gets a fresh session, so none is fenced on
  /// a predecessor's stale view, and every broker that then stays silent expires in one
  /// session timeout.
  public mutating func resetAll(nowMs: Int64) {
    lastHeartbeatMs = [:]
    baselineMs = nowMs
  }

  public mutating func recordHeartbeat(_ brokerID: BrokerID, nowMs: Int64) {
    lastHeartbeatMs[brokerID] = max(lastHeartbeatMs[brokerID] ?? baselineMs, nowMs)
  }

  public mutating func remove(_ brokerID: BrokerID) {
    lastHeartbeatMs[brokerID] = nil
  }

  public func lastHeartbeatMs(_ brokerID: BrokerID) -> Int64 {
    lastHeartbeatMs[brokerID] ?? baselineMs
  }

  public func isExpired(_ brokerID: BrokerID, nowMs: Int64, sessionTimeoutMs: Int64) -> Bool {
    nowMs - lastHeartbeatMs(brokerID) > sessionTimeoutMs
  }

  /// The earliest time an unfenced broker of `image` expires, for scheduling the next
  /// ``MetadataController/fenceExpired(image:sessions:nowMs:sessionTimeoutMs:)`` call.
  public func nextExpiryMs(image: MetadataImage, sessionTimeoutMs: Int64) -> Int64? {
    image.brokers.values.filter { !$0.fenced }
      .map { lastHeartbeatMs($0.id) + sessionTimeoutMs + 1 }
      .min()
  }
}
