"""unimarl.bridge"""
