"""trainers/run"""
