"""The weekly schedule: when to send (`trigger`), what one firing does (`runner`), and the
APScheduler loop that leads among schedulers (`scheduler`); `alerts` tells the operator.
"""
