"""trainers/collect"""
