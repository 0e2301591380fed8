"""trainers/selfplay"""
