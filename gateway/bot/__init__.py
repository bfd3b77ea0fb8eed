"""The bot: a conversation turn and the handler that runs it through its flow (the engine is gateway.flows).
"""
