import Logging
import NIOConcurrencyHelpers
import StreamBusMetaClient
import StreamBusMetaProtocol
import StreamBusMetadata

/// Keeps a local `MetadataImage` in step with the committed metadata log: FetchMetadata
/// long-polls from the image's offset, record batches are applied in order, and a snapshot
/// answer (the log after our offset was compacted away) replaces the image. Every new image
/// goes to `onImage`; `appliedOffset` is what heartbeats report to the controller, which
/// unfences the broker once it covers the broker's registration.
final class MetadataFollower: Sendable {
  private let client: MetaClient
  private let fetchMaxWaitMs: Int32
  private let onImage: @Sendable (MetadataImage) async -> Void
  private let logger: Logger

  private struct State {
    /// The image offset, or the server's committed offset when it answered "nothing after
    /// yours" (the entries in between carried no metadata).
    var appliedOffset: Int64 = 0
    var caughtUp = false
  }

  private let state = NIOLockedValueBox(State())

  init(
    client: MetaClient, fetchMaxWaitMs: Int32 = 500,
    onImage: @escaping @Sendable (MetadataImage) async -> Void, logger: Logger
  ) {
    self.client = client
    self.fetchMaxWaitMs = fetchMaxWaitMs
    self.onImage = onImage
    self.logger = logger
  }

  var appliedOffset: Int64 { state.withLockedValue { $0.appliedOffset } }
  var isCaughtUp: Bool { state.withLockedValue { $0.caughtUp } }

  /// Returns once the image has reached the committed offset the metaservers reported at
  /// least once, or when the task is cancelled (shutdown before the quorum answered).
  func waitUntilCaughtUp() async {
    while !isCaughtUp && !Task.isCancelled {
      try? await Task.sleep(for: .milliseconds(20))
    }
  }

  /// Follows the log until the task is cancelled.
  func run() async {
    var image = MetadataImage()
    var backoffMs: Int64 = 50
    var lastFailure: String?
    while !Task.isCancelled {
      let response: FetchMetadataResponse
      do {
        response = try await client.fetchMetadata(
          fromOffset: image.offset, maxWaitMs: isCaughtUp ? fetchMaxWaitMs : 0)
        if lastFailure != nil {
          logger.info("metadata fetch works again", metadata: ["offset": "\(image.offset)"])
          lastFailure = nil
        }
        backoffMs = 50
      } catch {
        if Task.isCancelled { break }
        let failure = "\(error)"
        if failure != lastFailure {
          logger.warning("fetching metadata failed; retrying", metadata: ["error": "\(error)"])
          lastFailure = failure
        }
        try? await Task.sleep(for: .milliseconds(backoffMs))
        backoffMs = min(backoffMs * 2, 1_000)
        continue
      }
      var changed = false
      var nothingNew = false
      do {
        switch response.content {
        case .entries(let entries):
          nothingNew = entries.isEmpty
          for entry in entries where entry.offset > image.offset {
            try image.apply(encodedBatch: entry.data, offset: entry.offset)
            changed = true
          }
        case .snapshot(let offset, let data):
          let snapshot = try MetadataImage(snapshot: data)
          guard snapshot.offset == offset else {
            throw BrokerError(
              "snapshot claims offset \(offset) but its image is at \(snapshot.offset)")
          }
          if snapshot.offset > image.offset {
            logger.info(
              "loaded metadata snapshot", metadata: ["offset": "\(snapshot.offset)"])
            image = snapshot
            changed = true
          }
        }
      } catch {
        // Applying is deterministic, so the metaserver skipped this batch as well; an image
        // that cannot follow must not guess. Retry (another metaserver may serve a snapshot).
        logger.error(
          "cannot apply metadata; retrying",
          metadata: ["offset": "\(image.offset)", "error": "\(error)"])
        try? await Task.sleep(for: .milliseconds(1_000))
        continue
      }
      let applied =
        nothingNew ? max(image.offset, response.committedOffset) : image.offset
      let nowCaughtUp = applied >= response.committedOffset
      if changed {
        await onImage(image)
      }
      let becameCaughtUp = state.withLockedValue { state -> Bool in
        state.appliedOffset = max(state.appliedOffset, applied)
        guard nowCaughtUp, !state.caughtUp else { return false }
        state.caughtUp = true
        return true
      }
      if becameCaughtUp {
        logger.info("metadata caught up", metadata: ["offset": "\(applied)"])
      }
    }
  }
}
