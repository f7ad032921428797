import Logging
import StreamBusMetaProtocol
import StreamBusProtocol

/// A broker's session with the metadata quorum: registers (getting a broker epoch), then
/// heartbeats until stopped, registering again when the controller says the session is gone
/// (fenced for good, stale epoch, unknown broker).
///
/// The controller unfences a broker only once it reports having applied the metadata up to its
/// own registration, so the caller supplies what it has applied through `appliedOffset`.
public actor BrokerSession {
  public struct Registration: Sendable {
    public var brokerID: Int32
    public var incarnationID: Int64
    public var endpoints: [MetaEndpoint]
    public var rack: String?
    public var capacity: MetaBrokerCapacity
    /// The identity of the broker's data directory (0: not said).
    public var directoryID: Int64

    public init(
      brokerID: Int32, incarnationID: Int64, endpoints: [MetaEndpoint], rack: String? = nil,
      capacity: MetaBrokerCapacity, directoryID: Int64 = 0
    ) {
      self.brokerID = brokerID
      self.incarnationID = incarnationID
      self.endpoints = endpoints
      self.rack = rack
      self.capacity = capacity
      self.directoryID = directoryID
    }
  }

  public nonisolated let registration: Registration
  public nonisolated let heartbeatIntervalMs: Int64
  private let client: MetaClient
  private let appliedOffset: @Sendable () async -> Int64
  private let logger: Logger

  public private(set) var brokerEpoch: Int64 = -1
  public private(set) var isFenced = true
  public private(set) var lastHeartbeatError: String?
  /// When the controller last accepted a heartbeat or registration (monotonic clock); a
  /// broker that has not heard back for its session timeout must assume it is fenced.
  public private(set) var lastSuccessfulHeartbeat: ContinuousClock.Instant?
  /// Heartbeats ask the controller to move leadership away (controlled shutdown).
  public private(set) var wantsShutdown = false
  /// The controller answered that the controlled shutdown is done: nothing is led here.
  public private(set) var shouldShutdown = false
  private var heartbeats: Task<Void, Never>?
  /// The incarnation registered: `registration.incarnationID` until `rejoin()`.
  private var incarnationID: Int64

  public init(
    client: MetaClient, registration: Registration, heartbeatIntervalMs: Int64 = 250,
    appliedOffset: @escaping @Sendable () async -> Int64, logger: Logger
  ) {
    precondition(heartbeatIntervalMs > 0, "heartbeatIntervalMs must be positive")
    self.client = client
    self.registration = registration
    self.heartbeatIntervalMs = heartbeatIntervalMs
    self.appliedOffset = appliedOffset
    self.logger = logger
    self.incarnationID = registration.incarnationID
  }

  /// Registers and starts heartbeating. Throws when the registration itself is refused.
  public func start() async throws {
    try await register()
    guard heartbeats == nil else { return }
    let interval = heartbeatIntervalMs
    heartbeats = Task { [weak self] in
      while !Task.isCancelled {
        try? await Task.sleep(for: .milliseconds(interval))
        guard let self else { return }
        await self.heartbeatOnce()
      }
    }
  }

  /// One heartbeat now; returns whether the broker is unfenced afterwards.
  @discardableResult
  public func heartbeatOnce() async -> Bool {
    let applied = await appliedOffset()
    do {
      let response = try await client.send(
        BrokerHeartbeatRequest(
          brokerID: registration.brokerID, brokerEpoch: brokerEpoch,
          appliedMetadataOffset: applied, wantShutdown: wantsShutdown),
        timeoutMs: heartbeatIntervalMs * 4)
      isFenced = response.isFenced
      if wantsShutdown && response.shouldShutdown {
        shouldShutdown = true
      }
      lastHeartbeatError = nil
      lastSuccessfulHeartbeat = .now
    } catch let error as MetaClientError {
      lastHeartbeatError = error.description
      if let code = error.errorCode,
        [.staleBrokerEpoch, .brokerIdNotRegistered, .brokerFenced].contains(code)
      {
        logger.info(
          "broker session lost; registering again",
          metadata: ["broker": "\(registration.brokerID)", "error": "\(error)"])
        try? await register()
      }
    } catch {
      lastHeartbeatError = "\(error)"
    }
    return !isFenced
  }

  /// From now on heartbeats ask for a controlled shutdown; `shouldShutdown` turns true once
  /// the controller has moved every leadership away.
  public func requestControlledShutdown() {
    wantsShutdown = true
  }

  /// Ends a controlled shutdown without exiting (a broker whose full disk has space again):
  /// registers as a new incarnation, which is the controller's way back for a broker in
  /// controlled shutdown. The broker starts fenced, is unfenced by its heartbeats once its
  /// metadata caught up, and its replicas rejoin ISRs as they catch up.
  public func rejoin() async throws {
    wantsShutdown = false
    shouldShutdown = false
    incarnationID = Int64.random(in: 1...Int64.max)
    try await register()
  }

  /// Stops heartbeating; the controller fences the broker when its session times out.
  public func stop() {
    heartbeats?.cancel()
    heartbeats = nil
  }

  private func register() async throws {
    let response = try await client.brokerRegister(
      BrokerRegisterRequest(
        brokerID: registration.brokerID, incarnationID: incarnationID,
        endpoints: registration.endpoints, rack: registration.rack,
        capacity: registration.capacity, directoryID: registration.directoryID))
    brokerEpoch = response.brokerEpoch
    isFenced = true
    lastSuccessfulHeartbeat = .now
  }
}
