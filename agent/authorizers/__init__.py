"""One authorizer per payment method (``payments.methods``), each a module named after what it drives:

    agent.authorizers.tpe          card_terminal: the amount goes to the TPE (Concert E+ or V3)
    agent.authorizers.card_reader  card_reader: the card read over PC/SC, the acquirer asked via the server

``cash`` needs no device: ``agent.authorize.CashAuthorizer``, beside the ``Authorizer`` protocol they all
follow. ``agent.context`` picks them by method name. "Terminal" alone means this counter (``terminal.id`` in
the config), never the payment device, which is the TPE.
"""
