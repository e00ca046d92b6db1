"""The schedules: when to send (`trigger`), sending each newsletter's due editions from the
plan in the database (`runner`), and the loop that leads among schedulers, with APScheduler
for periodic housekeeping (`scheduler`); `alerts` tells the operator.
"""
