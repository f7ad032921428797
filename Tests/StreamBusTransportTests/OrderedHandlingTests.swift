import NIOCore
import Testing

@testable import StreamBusTransport

/// Handler calls of one connection are serial and in arrival order; `.deferred` replies
/// overlap with later requests but are still written in request order.
@Suite struct OrderedHandlingTests {
  @Test func handlerCallsAreSerialAndInArrivalOrder() async throws {
    let handled = Recorder()
    let overlap = OverlapProbe()
    let handler = ClosureHandler { frame, _ in
      await overlap.enter()
      let request = ParsedRequest(frame)
      // A later call that started meanwhile would record its id first.
      try? await Task.sleep(for: .microseconds(Int.random(in: 0...300)))
      await handled.append(request.correlationId)
      await overlap.leave()
      return .respond(makeResponse(correlationId: request.correlationId, body: []))
    }
    let server = try await startServer(handler)
    let requestCount = 200
    // 1 KiB bodies: the 200 KiB arrive over several reads, queued while calls run.
    let body = [UInt8](repeating: 5, count: 1024)
    let bytes = framed((0..<requestCount).map { makeRequest(correlationId: Int32($0), body: body) })
    let peer = try await RawPeer.connect(to: server.localAddress)
    let collect = Task { try await peer.send(bytes) }
    #expect(try await eventually(timeoutMs: 10_000) { await handled.values.count == requestCount })
    await server.shutdownGracefully()
    #expect(try responseCorrelationIds(try await collect.value) == Array(0..<Int32(requestCount)))
    #expect(await handled.values == Array(0..<Int32(requestCount)))
    #expect(await overlap.insideMax == 1)
  }

  @Test func deferredWorkDoesNotHoldUpLaterRequests() async throws {
    let gate = Gate()
    let handlerCalls = Counter()
    let handler = ClosureHandler { frame, info in
      await handlerCalls.increment()
      if ParsedRequest(frame).correlationId == 0 {
        return .deferred {
          await gate.pass()
          return await echoHandler.handle(frame: frame, connection: info)
        }
      }
      return await echoHandler.handle(frame: frame, connection: info)
    }
    let server = try await startServer(handler)
    let connection = try await connect(server)
    let answered = Counter()
    let first = Task {
      let response = try await connection.send(makeRequest(correlationId: 0, body: [0]))
      await answered.increment()
      return response
    }
    await gate.waitUntilStarted(1)
    let later = Task {
      try await withThrowingTaskGroup(of: Void.self) { group in
        for id in 1...5 {
          group.addTask {
            let response = try await connection.send(
              makeRequest(correlationId: Int32(id), body: [UInt8(id)]))
            #expect(response == makeResponse(correlationId: Int32(id), body: [UInt8(id)]))
            await answered.increment()
          }
        }
        try await group.waitForAll()
      }
    }
    // The later requests are handled while the first one's work waits...
    #expect(try await eventually { await handlerCalls.value == 6 })
    try await Task.sleep(for: .milliseconds(50))
    // ...but their replies wait for the first reply.
    #expect(await answered.value == 0)
    await gate.open()
    #expect(try await first.value == makeResponse(correlationId: 0, body: [0]))
    try await later.value
    #expect(await answered.value == 6)
    await connection.close()
    await server.shutdownGracefully()
  }

  @Test func deferredRepliesFinishOutOfOrderButAreWrittenInOrder() async throws {
    let completions = Recorder()
    let requestCount: Int32 = 20
    let handler = ClosureHandler { frame, _ in
      let id = ParsedRequest(frame).correlationId
      let finish: @Sendable () async -> FrameReply = {
        try? await Task.sleep(for: .milliseconds(Int(requestCount - id) * 3))
        await completions.append(id)
        // Every fifth request is one-way: it keeps its place but writes nothing.
        return id % 5 == 4 ? .noResponse : .respond(makeResponse(correlationId: id, body: []))
      }
      switch id % 3 {
      case 0: return .deferred { .deferred(finish) }
      case 1: return .deferred(finish)
      default: return await finish()
      }
    }
    let server = try await startServer(handler)
    let peer = try await RawPeer.connect(to: server.localAddress)
    let collect = Task {
      try await peer.send(framed((0..<requestCount).map { makeRequest(correlationId: $0) }))
    }
    #expect(try await eventually { await completions.values.count == Int(requestCount) })
    await server.shutdownGracefully()
    let written = try responseCorrelationIds(try await collect.value)
    #expect(written == (0..<requestCount).filter { $0 % 5 != 4 })
    let finished = await completions.values
    #expect(finished != finished.sorted())
  }

  @Test func closeReplyStopsLaterRequestsFromBeingHandled() async throws {
    let handled = Recorder()
    let handler = ClosureHandler { frame, info in
      let request = ParsedRequest(frame)
      await handled.append(request.correlationId)
      if request.apiKey == 9 {
        return .close(reason: "test asked to close")
      }
      return await echoHandler.handle(frame: frame, connection: info)
    }
    let server = try await startServer(handler)
    let peer = try await RawPeer.connect(to: server.localAddress)
    let received = try await peer.send(
      framed([
        makeRequest(correlationId: 0), makeRequest(apiKey: 9, correlationId: 1),
        makeRequest(correlationId: 2), makeRequest(correlationId: 3),
      ]))
    #expect(try responseCorrelationIds(received) == [0])
    #expect(await handled.values == [0, 1])
    await server.shutdownGracefully()
  }

  @Test func gracefulShutdownWaitsForDeferredWork() async throws {
    let started = Gate()
    await started.open()
    let handler = ClosureHandler { frame, info in
      .deferred {
        await started.pass()
        try? await Task.sleep(for: .milliseconds(150))
        return await echoHandler.handle(frame: frame, connection: info)
      }
    }
    let server = try await startServer(handler)
    let connection = try await connect(server)
    let pending = Task { try await connection.send(makeRequest(correlationId: 4, body: [9])) }
    await started.waitUntilStarted(1)
    let clock = ContinuousClock()
    let shutdownStarted = clock.now
    await server.shutdownGracefully()
    #expect(clock.now - shutdownStarted >= .milliseconds(100))
    #expect(try await pending.value == makeResponse(correlationId: 4, body: [9]))
    #expect(server.connectionCount == 0)
  }

  @Test func closingTheConnectionCancelsDeferredWork() async throws {
    let started = Gate()
    await started.open()
    let cancelled = Counter()
    let handler = ClosureHandler { frame, info in
      .deferred {
        await started.pass()
        try? await Task.sleep(for: .seconds(30))
        if Task.isCancelled {
          await cancelled.increment()
        }
        return await echoHandler.handle(frame: frame, connection: info)
      }
    }
    let server = try await startServer(handler)
    let connection = try await connect(server)
    let pending = Task { try await connection.send(makeRequest(correlationId: 1)) }
    await started.waitUntilStarted(1)
    await connection.close()
    let error = await #expect(throws: TransportError.self) { try await pending.value }
    #expect(error?.code == .connectionClosed)
    #expect(try await eventually { await cancelled.value == 1 })
    #expect(try await eventually { server.connectionCount == 0 })
    let clock = ContinuousClock()
    let shutdownStarted = clock.now
    await server.shutdownGracefully()
    #expect(clock.now - shutdownStarted < .seconds(5))
  }

  @Test func shutdownGracePeriodCancelsDeferredWork() async throws {
    let started = Gate()
    await started.open()
    let cancelled = Counter()
    let handler = ClosureHandler { frame, info in
      .deferred {
        await started.pass()
        try? await Task.sleep(for: .seconds(30))
        if Task.isCancelled {
          await cancelled.increment()
        }
        return await echoHandler.handle(frame: frame, connection: info)
      }
    }
    let server = try await startServer(handler) { $0.shutdownGracePeriodMs = 100 }
    let connection = try await connect(server)
    let pending = Task { try await connection.send(makeRequest(correlationId: 1)) }
    await started.waitUntilStarted(1)
    let clock = ContinuousClock()
    let shutdownStarted = clock.now
    await server.shutdownGracefully()
    #expect(clock.now - shutdownStarted < .seconds(5))
    let error = await #expect(throws: TransportError.self) { try await pending.value }
    #expect(error?.code == .connectionClosed)
    #expect(try await eventually { await cancelled.value == 1 })
  }
}
